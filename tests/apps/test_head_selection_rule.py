"""apps/head_selection_rule.py: the heads' vote on constructed heads (no training)."""

from __future__ import annotations

import numpy as np

from tests.helpers.apps import load_app


def _noisy_heads(truth, heads, wrong, seed=0, k=10):
    """Each head: the true cut with its channels permuted and a share `wrong` of images moved.

    Returns the heads' assignments and their permutations.
    """
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(k) for _ in range(heads)]
    out = []
    for perm in perms:
        a = perm[truth]
        moved = rng.random(len(truth)) < wrong
        a[moved] = rng.integers(0, k, moved.sum())
        out.append(a)
    return np.array(out), perms


def test_renaming_undoes_a_permutation():
    app = load_app("head_selection_rule")
    truth = np.repeat(np.arange(10), 30)
    heads, _ = _noisy_heads(truth, 3, wrong=0.0)
    names = app.renaming(heads, heads[0])
    for h in range(3):
        np.testing.assert_array_equal(names[h][heads[h]], heads[0])


def test_the_vote_of_noisy_heads_beats_each_head():
    app = load_app("head_selection_rule")
    from kmixvae.evaluation.metrics import clustering_accuracy

    truth = np.repeat(np.arange(10), 200)
    heads, perms = _noisy_heads(truth, 9, wrong=0.3, seed=1)
    names = app.renaming(heads, heads[0])
    vote = app.consensus(heads, names)
    each = [clustering_accuracy(truth, a) for a in heads]
    assert max(each) < 0.8 and clustering_accuracy(truth, vote) > 0.97
    # The renaming learnt on one set of images applies to others the heads label alike.
    new = np.arange(10)[::-1].repeat(5)
    other = np.array([perm[new] for perm in perms])
    np.testing.assert_array_equal(app.consensus(other, names), names[0][other[0]])


def test_size_entropy_is_highest_for_equal_channels():
    app = load_app("head_selection_rule")
    equal = np.repeat(np.arange(10), 20)
    merged = np.concatenate([np.zeros(110, "int64"), np.repeat(np.arange(1, 10), 10)])
    np.testing.assert_allclose(app._size_entropy(equal), np.log(10))
    assert app._size_entropy(np.zeros(50, "int64")) == 0.0
    assert 0.0 < app._size_entropy(merged) < app._size_entropy(equal)


def test_the_screen_draws_its_views_with_every_option_it_is_given():
    app = load_app("head_selection_rule")
    model = app.HeadsModel(
        2, 0, shear=0.3, scale=0.2, flip=0.5, erase=0.4, brightness=0.3, gamma=0.5
    )
    views = model.aug.get_config()
    assert {k: views[k] for k in ("shear", "scale", "flip", "erase", "brightness", "gamma")} == {
        "shear": 0.3,
        "scale": 0.2,
        "flip": 0.5,
        "erase": 0.4,
        "brightness": 0.3,
        "gamma": 0.5,
    }


def test_a_seed_can_start_from_initial_weights_another_run_wrote(tmp_path):
    import shutil

    app = load_app("head_selection_rule")
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1)).astype("float32")
    y = np.arange(32) % 10

    def heads(seed, **init):
        accuracy, _, _, _ = app.run_seed(x, x[:32], y, 2, seed, epochs=1, batch=32, **init)
        return accuracy

    saved = tmp_path / "saved"
    first = heads(0, init_dir=saved, init_mode="save")
    assert (saved / "initial_seed0.weights.h5").exists()
    np.testing.assert_array_equal(heads(0, init_dir=saved, init_mode="load"), first)
    # Seed 1 from seed 0's weights is another run than seed 1 from its own.
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copy(saved / "initial_seed0.weights.h5", swapped / "initial_seed1.weights.h5")
    own, other = heads(1), heads(1, init_dir=swapped, init_mode="load")
    assert not np.array_equal(own, other)


def test_the_trunk_can_be_drawn_again_by_another_initializer():
    from keras import ops

    app = load_app("head_selection_rule")
    model = app.HeadsModel(2, 0)
    model(np.zeros((2, 28, 28, 2), "float32"))
    before = ops.convert_to_numpy(model.enc.convs[1].kernel).copy()
    app.redraw_trunk(model, "Orthogonal", 0)
    kernel = ops.convert_to_numpy(model.enc.convs[1].kernel).reshape(-1, 64)  # (3*3*32, 64)
    np.testing.assert_allclose(kernel.T @ kernel, np.eye(64), atol=1e-4)
    assert not np.allclose(before.reshape(-1, 64).T @ before.reshape(-1, 64), np.eye(64), atol=1e-2)


def test_a_bad_initializer_or_missing_initial_weights_is_one_error_line(tmp_path, capsys):
    import pytest

    app = load_app("head_selection_rule")
    for argv, words in (
        (["--initializer", "NoSuchInit"], "is not a Keras initializer"),
        (["--load-init", str(tmp_path), "--seeds", "3"], "initial_seed3.weights.h5"),
        (["--data-dir", str(tmp_path / "nothing")], "not a folder"),
        (
            [
                "--data-dir",
                str(_idx_set(tmp_path / "t10k", "t10k", 10)),
                "--val-split",
                "test[20:]",
            ],
            "test[20:]",
        ),
    ):
        with pytest.raises(SystemExit) as stop:
            app.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith("error:") and words in err
        assert err.count("\n") == 1


def _idx_set(folder, prefix, n):
    """`n` labelled 28x28 IDX images named `prefix`-... in `folder`: image i is all i, label i % 10."""
    from tests.helpers.idx_files import IMAGES_MAGIC, LABELS_MAGIC, write_idx

    folder.mkdir(parents=True, exist_ok=True)
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, IMAGES_MAGIC)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, LABELS_MAGIC)
    return folder


def test_the_protocol_follows_the_data_or_the_given_splits(tmp_path):
    app = load_app("head_selection_rule")
    # The 10k test set alone: test[:80%] -> test[80%:].
    x_train, x_val, y_val = app.read_protocol(_idx_set(tmp_path / "t10k", "t10k", 10))
    assert x_train.shape == (8, 28, 28, 1) and x_train.dtype == np.float32
    np.testing.assert_allclose(x_train[:, 0, 0, 0] * 255, np.arange(8), atol=1e-4)
    np.testing.assert_allclose(x_val[:, 0, 0, 0] * 255, [8, 9], atol=1e-4)
    assert y_val.tolist() == [8, 9] and y_val.dtype == np.int64
    # A training set, with the splits given.
    train = _idx_set(tmp_path / "train", "train", 12)
    x_train, x_val, y_val = app.read_protocol(train, "train[:6]", "train[9:]")
    assert len(x_train) == 6 and y_val.tolist() == [9, 0, 1]
    # A training set too small for the default train[50000:52000]: its own error.
    import pytest

    from kmixvae.errors import KmixvaeError

    with pytest.raises(KmixvaeError):
        app.read_protocol(train)
