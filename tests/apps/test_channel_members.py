"""apps/channel_members.py: a channel's labels and grey level, on constructed channels."""

from __future__ import annotations

import numpy as np

from tests.helpers.apps import load_app


def test_a_channel_that_holds_the_dark_images_of_two_labels_shows_it():
    app = load_app("channel_members")
    labels = np.repeat([0, 1], 40)
    dark = np.tile(np.arange(40) < 20, 2)  # half of each label is dark
    images = np.where(dark, 0.2, 0.6)[:, None, None, None] * np.ones((80, 4, 4, 1))
    channels = np.where(dark, 0, np.where(labels == 0, 1, 2))  # 0: the dark ones of both
    rows = {r["channel"]: r for r in app.channel_members(channels, labels, images)}
    assert rows[0]["labels"] == {0: 20, 1: 20} and rows[0]["count"] == 40
    assert rows[1]["labels"] == {0: 20} and rows[2]["labels"] == {1: 20}
    np.testing.assert_allclose(rows[0]["ink"], 0.2)
    np.testing.assert_allclose(rows[0]["ink_elsewhere"], 0.6)  # the same labels, bright
    # A label under the share threshold is left out of a channel's list.
    channels[40] = 1  # one label-1 image among 20 of label 0
    assert app.channel_members(channels, labels, images, min_share=0.1)[1]["labels"] == {0: 20}


def test_an_unknown_model_is_one_error_line(tmp_path, capsys):
    app = load_app("channel_members")
    data = tmp_path / "data"
    data.mkdir()
    assert app.main(["no_such_preset", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
