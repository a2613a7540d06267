"""Reading a written `report.html`: its images, header cells, element ids and text."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from tests.helpers.runs import PNG_MAGIC


class Page(HTMLParser):
    """Collects image sources, header cells (text and `title`), element ids and all text."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []
        self.headers: list[str] = []
        self.header_keys: list[str] = []
        self.ids: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if "id" in attrs:
            self.ids.append(attrs["id"])
        self._in_th = tag == "th"
        if tag == "th" and "title" in attrs:
            self.header_keys.append(attrs["title"])

    def handle_endtag(self, tag):
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_th:
            self.headers.append(data.strip())


def parse(path: Path) -> Page:
    """The parsed page of the HTML file `path`."""
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def assert_images_exist(page: Page, folder: Path):
    """Every image of `page` is embedded PNG data or a file in `folder`; there is one at least."""
    assert page.images
    for src in page.images:
        if src.startswith("data:image/png;base64,"):
            png = base64.b64decode(src.split(",", 1)[1])
            assert png[:8] == PNG_MAGIC and len(png) > 100
        else:
            assert (folder / src).is_file(), src
