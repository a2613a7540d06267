"""The neighbour graph: exact below `EXACT_MAX_ROWS`, faiss HNSW above, mutual filter, cache."""

from __future__ import annotations

import numpy as np
import pytest

from kmixvae.data import neighbors as nb


def _old_mutual_mask(neighbors):
    """The Python-set implementation `mutual_mask` replaced (kept to compare against)."""
    neighbors = np.asarray(neighbors, dtype="int64")
    n, k = neighbors.shape
    rows = np.repeat(np.arange(n), k)
    cols = neighbors.ravel()
    forward = set(zip(rows.tolist(), cols.tolist()))
    return np.array([(j, i) in forward for i, j in zip(rows, cols)]).reshape(n, k)


def _old_mutual_neighbors(neighbors):
    """The row-loop implementation `mutual_neighbors` replaced."""
    neighbors = np.asarray(neighbors, dtype="int64")
    n, k = neighbors.shape
    mutual = _old_mutual_mask(neighbors)
    out = np.empty_like(neighbors)
    for i in range(n):
        kept = neighbors[i][mutual[i]]
        if len(kept) == 0:
            kept = neighbors[i][:1]
        out[i] = np.resize(kept, k)
    return out


def _clusters(n=3000, d=32, clusters=30, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    labels = rng.integers(0, clusters, size=n)
    return (centres[labels] + noise * rng.normal(size=(n, d))).astype("float32")


def _recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)])


def test_hnsw_recall_on_clusters_above_threshold(monkeypatch):
    monkeypatch.setattr(nb, "EXACT_MAX_ROWS", 500)
    monkeypatch.setattr(nb, "HNSW_CHUNK_ROWS", 1000)  # added and searched in 3 chunks
    x = _clusters()
    approx = nb.cosine_neighbors(x, 20)
    exact = nb.cosine_neighbors(x, 20, method="exact")
    assert approx.shape == (3000, 20) and approx.dtype == np.int64
    assert not (approx == np.arange(3000)[:, None]).any(), "a row is its own neighbour"
    assert all(len(set(row)) == 20 for row in approx), "a neighbour is listed twice"
    assert _recall(approx, exact) >= 0.95


def test_approximate_above_threshold_exact_at_or_below(monkeypatch):
    calls = []
    real = nb.hnsw_neighbors

    def spy(rows, k):
        calls.append(len(rows))
        return real(rows, k)

    monkeypatch.setattr(nb, "hnsw_neighbors", spy)
    monkeypatch.setattr(nb, "EXACT_MAX_ROWS", 400)
    x = _clusters(n=400)
    below = nb.cosine_neighbors(x, 5)
    assert calls == []
    np.testing.assert_array_equal(below, nb.cosine_neighbors(x, 5, method="exact"))
    nb.cosine_neighbors(_clusters(n=401), 5)
    assert calls == [401]


def test_default_threshold_keeps_8000_images_exact():
    assert nb.EXACT_MAX_ROWS == 10_000


def test_hnsw_excludes_self_with_duplicate_rows():
    x = _clusters(n=300, d=8)
    x[1::2] = x[0::2]  # every row has an identical twin
    out = nb.cosine_neighbors(x, 4, method="hnsw")
    assert not (out == np.arange(300)[:, None]).any()
    twins = np.arange(300) ^ 1
    assert (out == twins[:, None]).any(axis=1).mean() > 0.95


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method"):
        nb.cosine_neighbors(np.ones((5, 3)), 2, method="annoy")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_mutual_filter_matches_old_implementation(seed):
    rng = np.random.default_rng(seed)
    n, k = 60, 5
    # A real k-NN table (many mutual pairs) and a random one (few, some rows with none).
    for table in (
        nb.cosine_neighbors(rng.normal(size=(n, 6)), k, method="exact"),
        np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)]),
    ):
        np.testing.assert_array_equal(nb.mutual_mask(table), _old_mutual_mask(table))
        # Chunks that do not divide N: every row is checked once, against all N rows.
        np.testing.assert_array_equal(nb.mutual_mask(table, chunk=7), _old_mutual_mask(table))
        np.testing.assert_array_equal(nb.mutual_neighbors(table), _old_mutual_neighbors(table))
    assert (~_old_mutual_mask(table)).all(axis=1).any(), "no row without mutual pairs tested"


def test_pixel_graph_is_computed_once_per_images_and_k(monkeypatch):
    calls = []
    real = nb.cosine_neighbors

    def counting(vectors, k, block=1024, method="auto"):
        calls.append(k)
        return real(vectors, k, block=block, method=method)

    monkeypatch.setattr(nb, "cosine_neighbors", counting)
    nb.clear_pixel_cache()
    images = np.random.default_rng(0).integers(0, 256, size=(50, 6, 6, 1), dtype=np.uint8)
    first = nb.pixel_neighbors(images, 5)
    again = nb.pixel_neighbors(images.copy(), 5)  # equal bytes, another array
    assert again is first and calls == [5]
    assert not first.flags.writeable
    nb.pixel_neighbors(images, 6)  # another k: another graph
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    nb.pixel_neighbors(changed, 5)  # other images: another graph
    assert calls == [5, 6, 5]
    assert nb.pixel_cache_stats == {"computed": 3, "reused": 1}
    nb.clear_pixel_cache()


def test_channel_pruning_shares_the_pixel_graph(monkeypatch):
    from kmixvae.training.channel_pruning import mutual_pairs, pixel_pairs

    nb.clear_pixel_cache()
    images = np.random.default_rng(1).integers(0, 256, size=(40, 5, 5, 1), dtype=np.uint8)
    nb.pixel_neighbors(images, 4)  # the neighbour pairs of a run
    shared = pixel_pairs(images, 4)  # pruning's check
    assert nb.pixel_cache_stats == {"computed": 1, "reused": 1}
    np.testing.assert_array_equal(shared, mutual_pairs(images, 4))
    nb.clear_pixel_cache()


def test_approximate_graph_works_without_tensorflow():
    """The HNSW path is numpy + faiss only: it runs where `import tensorflow` fails."""
    import os
    import subprocess
    import sys

    from tests.helpers.without_tensorflow import no_tf_pythonpath

    env = dict(os.environ, PYTHONPATH=no_tf_pythonpath())
    code = (
        "import sys, numpy as np\n"
        "from kmixvae.data import neighbors as nb\n"
        "nb.EXACT_MAX_ROWS = 100\n"
        "x = np.random.default_rng(0).normal(size=(300, 16))\n"
        "out = nb.mutual_neighbors(nb.cosine_neighbors(x, 5))\n"
        "assert out.shape == (300, 5)\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_large_graphs_keep_8bit_rows_with_the_same_recall(monkeypatch):
    """From `HNSW_SQ_MIN_ROWS` rows the index holds 8-bit codes (a quarter of the memory)."""
    import faiss

    made = []
    real = faiss.IndexHNSWSQ

    def spy(*args):
        made.append(args)
        return real(*args)

    monkeypatch.setattr(faiss, "IndexHNSWSQ", spy)
    monkeypatch.setattr(nb, "EXACT_MAX_ROWS", 500)
    monkeypatch.setattr(nb, "HNSW_SQ_MIN_ROWS", 2000)
    monkeypatch.setattr(nb, "HNSW_SQ_TRAIN_ROWS", 1000)
    x = _clusters()
    exact = nb.cosine_neighbors(x, 20, method="exact")
    approx = nb.cosine_neighbors(x, 20)
    assert len(made) == 1 and made[0][1] == faiss.ScalarQuantizer.QT_8bit
    assert not (approx == np.arange(3000)[:, None]).any()
    assert _recall(approx, exact) >= 0.95
    monkeypatch.setattr(nb, "HNSW_SQ_MIN_ROWS", 3001)  # one row more: float32 rows, as before
    nb.cosine_neighbors(x, 20)
    assert len(made) == 1
