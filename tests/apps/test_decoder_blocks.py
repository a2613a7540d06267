"""apps/decoder_blocks.py: every block builds the same decoder shape and trains."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.apps import load_app


@pytest.fixture(scope="module")
def app():
    return load_app("decoder_blocks")


@pytest.mark.parametrize("block", ["upsample", "subpixel", "transpose"])
def test_blocks_decode_to_the_image_shape_and_time(app, block):
    model = app.build(block)
    assert model.output_shape == (None, 28, 28, 2)
    out = model.predict(np.zeros((3, 2), "float32"), verbose=0)
    assert out.shape == (3, 28, 28, 2)
    assert app.time_block(block, rows=4, steps=2) > 0


def test_pixel_shuffle_places_sub_pixels(app):
    h = np.arange(2 * 2 * 4, dtype="float32").reshape(1, 2, 2, 4)
    out = np.asarray(app.pixel_shuffle(h))
    # Channel c of pixel (i, j) goes to pixel (2i + c // 2, 2j + c % 2).
    for i in range(2):
        for j in range(2):
            for c in range(4):
                assert out[0, 2 * i + c // 2, 2 * j + c % 2, 0] == h[0, i, j, c]


def test_unknown_block_is_a_usage_error(app, capsys):
    with pytest.raises(SystemExit) as e:
        app.main(["--blocks", "nope"])
    assert e.value.code == 2 and "--blocks: 'nope'" in capsys.readouterr().err
