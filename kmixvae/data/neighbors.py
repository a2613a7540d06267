"""Nearest neighbours: the pairs of the neighbour-consistency term.

Computed from the training images (no labels): cosine similarity of
centred, L2-normalised pixel vectors or histograms of oriented gradients
(`data.neighbor_space`), or (after `data.neighbor_refresh_epoch`) of the
encoder's trunk features. On the 8,000 real MNIST images of
`test[:80%]`, 91% of the 10 nearest neighbours of an image share its label
(measured; labels are not used to build the graph).

Up to `EXACT_MAX_ROWS` rows the graph is exact (blocked matrix products,
O(N^2 D)); above it, it is approximate: faiss's HNSW index (`IndexHNSWFlat`,
inner product on the same centred, L2-normalised float32 rows), whose
recall@20 against the exact graph is >= 0.95 on 60,000 Fashion-MNIST images
(measured by `apps/scale_benchmark.py`, see `docs/performance.md`). The
input-space graph of one array of images is computed once per process
(`input_neighbors`); the pixel graph is shared by the neighbour pairs and
channel pruning, which always counts its links on pixels.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import numpy as np

from kmixvae import choices
from kmixvae.data.descriptors import hog_descriptors

EXACT_MAX_ROWS = 10_000
"""Rows up to which the graph is exact; above it, approximate (faiss HNSW)."""

HNSW_M = 32
"""Links per node of the HNSW graph (faiss `IndexHNSWFlat`)."""

HNSW_EF_CONSTRUCTION = 40
"""Candidates kept while the HNSW graph is built."""

HNSW_EF_SEARCH = 40
"""Candidates kept per query (raised to `k + 1` when smaller)."""

PIXEL_CACHE_SIZE = 2
"""Input-space graphs `input_neighbors` keeps per process (keyed by the images' checksum, k and
space)."""

SPACE_NAMES = {"pixels": "pixel", "hog": "HOG"}
"""How a log line names each input space (`... in pixel space`, `... in HOG space`)."""

_pixel_cache: OrderedDict = OrderedDict()
pixel_cache_stats = {"computed": 0, "reused": 0}
"""How often `input_neighbors` computed a graph and how often it reused one."""


def _images_key(images: np.ndarray, k: int, block: int, space: str) -> tuple:
    data = np.ascontiguousarray(images)
    digest = hashlib.blake2b(data.view(np.uint8).reshape(-1), digest_size=16).hexdigest()
    return (data.shape, data.dtype.str, digest, int(k), int(block), space)


def clear_pixel_cache() -> None:
    """Forgets the cached input-space graphs (and resets `pixel_cache_stats`)."""
    _pixel_cache.clear()
    pixel_cache_stats.update(computed=0, reused=0)


def input_neighbors(
    images: np.ndarray, k: int, space: str = "pixels", block: int = 1024
) -> np.ndarray:
    """The `k` nearest neighbours of every image in an input space, nearest first.

    `space` is `"pixels"` (the images' pixel vectors) or `"hog"` (their
    histograms of oriented gradients, `kmixvae.data.descriptors.hog_descriptors`;
    on the 8,000 Fashion-MNIST training images at k = 20, 79% of the pairs
    share the garment against 75% for pixels, on 8,000 MNIST digits 91.5%
    against 88.4%). The same images (same shape, dtype and bytes), `k` and
    space are computed once per process: a second call returns the first
    call's table (read-only), so the neighbour pairs of a run and its
    channel-pruning checks (pixels) share one graph when both use pixels.
    The last `PIXEL_CACHE_SIZE` graphs are kept.

    Args:
        images: `(N, H, W, C)` images (uint8 or float).
        k: int. Neighbours per image; `1 <= k < N`.
        space: one of `kmixvae.choices.NEIGHBOR_SPACES`.
        block: int. Rows of the similarity matrix computed at once (memory
            is `block * N` floats; exact graph only).

    Returns:
        int64 `(N, k)` indices into `images` (read-only).

    Example:

    ```python
    nbr = input_neighbors(train_images, k=20, space="hog")   # (N, 20)
    ```
    """
    if space not in choices.NEIGHBOR_SPACES:
        raise ValueError(f"space: {space!r} is not one of {choices.NEIGHBOR_SPACES}")
    images = np.asarray(images)
    key = _images_key(images, k, block, space)
    if key in _pixel_cache:
        _pixel_cache.move_to_end(key)
        pixel_cache_stats["reused"] += 1
        return _pixel_cache[key]
    vectors = hog_descriptors(images) if space == "hog" else images.reshape(len(images), -1)
    out = cosine_neighbors(vectors, k, block=block)
    out.setflags(write=False)
    pixel_cache_stats["computed"] += 1
    _pixel_cache[key] = out
    while len(_pixel_cache) > PIXEL_CACHE_SIZE:
        _pixel_cache.popitem(last=False)
    return out


def pixel_neighbors(images: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """The `k` nearest neighbours of every image in pixel space: `input_neighbors(..., "pixels")`.

    Example:

    ```python
    nbr = pixel_neighbors(train_images, k=20)   # (N, 20)
    ```
    """
    return input_neighbors(images, k, space="pixels", block=block)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    n = len(vectors)
    # One float32 copy, centred and normalised in place (4 N D bytes, 784 MB at 250k images).
    f = np.array(vectors, dtype="float32").reshape(n, -1)
    f -= f.mean(axis=1, keepdims=True)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-8
    return f


def cosine_neighbors(
    vectors: np.ndarray, k: int, block: int = 1024, method: str = "auto"
) -> np.ndarray:
    """The `k` nearest neighbours of every row of `(N, D)` vectors, nearest first.

    Similarity is the cosine of the vectors after centring each one (its mean
    over D subtracted); a row is never its own neighbour.

    Args:
        vectors: `(N, D)` pixels or features.
        k: int. Neighbours per row; `1 <= k < N`.
        block: int. Rows of the similarity matrix computed at once (exact only).
        method: `"auto"` (exact up to `EXACT_MAX_ROWS` rows, else HNSW),
            `"exact"` or `"hnsw"`.

    Returns:
        int64 `(N, k)` row indices.
    """
    n = len(vectors)
    if not 1 <= k < n:
        raise ValueError(f"k: {k} must be in 1..{n - 1} for {n} images")
    if method not in ("auto", "exact", "hnsw"):
        raise ValueError(f"method: {method!r} must be 'auto', 'exact' or 'hnsw'")
    if method == "hnsw" or (method == "auto" and n > EXACT_MAX_ROWS):
        return hnsw_neighbors(np.asarray(vectors).reshape(n, -1), k)
    f = _unit_rows(vectors)
    out = np.empty((n, k), dtype="int64")
    for start in range(0, n, block):
        sim = f[start : start + block] @ f.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1)
        out[start : start + block] = np.take_along_axis(part, order, axis=1)
    return out


def _faiss_threads() -> int:
    """CPUs this process may use (`OMP_NUM_THREADS` when set lower)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        cpus = min(cpus, int(env))
    return max(1, cpus)


MUTUAL_CHUNK_ROWS = 16_384
"""Rows `mutual_mask` checks at once (`16,384 x k x k` int64: 52 MB at k = 20)."""

HNSW_SQ_MIN_ROWS = 250_000
"""Rows from which the HNSW index keeps its rows as 8-bit codes (`IndexHNSWSQ`, QT_8bit): D
bytes a row instead of 4 D, the index's float32 copy of 1,000,000 MNIST-sized rows 3.1 GB ->
0.78 GB. Below it the rows stay float32 (`IndexHNSWFlat`), so the graphs up to 250,000 rows are
what they were."""

HNSW_SQ_TRAIN_ROWS = 65_536
"""Rows (a fixed random sample, seed 0) the 8-bit codes' per-dimension ranges are fitted on."""

HNSW_CHUNK_ROWS = 65_536
"""Rows normalised to float32 at once on the HNSW path (the index holds the only full copy)."""


def hnsw_neighbors(vectors: np.ndarray, k: int) -> np.ndarray:
    """Approximate `k` nearest neighbours by centred cosine similarity (faiss HNSW).

    Builds `faiss.IndexHNSWFlat(D, HNSW_M, METRIC_INNER_PRODUCT)` on the rows,
    centred and L2-normalised as `cosine_neighbors` does, `HNSW_CHUNK_ROWS`
    at a time (the index keeps the only float32 copy of all rows: 4 N D
    bytes; from `HNSW_SQ_MIN_ROWS` rows an `IndexHNSWSQ` with 8-bit codes,
    N D bytes), and queries every row for `k + 1` neighbours, dropping the row
    itself; faiss runs on the CPUs this process may use (`OMP_NUM_THREADS`
    caps it).

    Args:
        vectors: `(N, D)` rows (uint8 or float; centring and normalising
            rows that already are leaves them as they are).
        k: int. Neighbours per row; `1 <= k < N`.

    Returns:
        int64 `(N, k)` row indices, nearest first.
    """
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError(
            f"the approximate neighbour graph (more than {EXACT_MAX_ROWS} rows) needs "
            "faiss-cpu: pip install faiss-cpu"
        ) from e
    n, d = vectors.shape
    chunks = [slice(s, s + HNSW_CHUNK_ROWS) for s in range(0, n, HNSW_CHUNK_ROWS)]
    found = np.empty((n, k + 1), dtype="int64")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(_faiss_threads())
    try:
        if n >= HNSW_SQ_MIN_ROWS:
            index = faiss.IndexHNSWSQ(
                d, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT
            )
            sample = np.random.default_rng(0).choice(n, min(n, HNSW_SQ_TRAIN_ROWS), replace=False)
            index.train(_unit_rows(vectors[np.sort(sample)]))
        else:
            index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        for rows in chunks:
            index.add(_unit_rows(vectors[rows]))
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k + 1)
        for rows in chunks:
            found[rows] = index.search(_unit_rows(vectors[rows]), k + 1)[1]
    finally:
        faiss.omp_set_num_threads(before)
    found = found.astype("int64")
    # Drop the row itself (wherever it lies, duplicates may precede it) and
    # faiss's -1 for missing results; keep the first k left, nearest first.
    bad = (found == np.arange(n)[:, None]) | (found < 0)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(found, order, axis=1)
    short = np.take_along_axis(bad, order, axis=1)
    if short.any():
        # Rare: fewer than k results; repeat the row's first neighbour.
        out = np.where(short, out[:, :1], out)
    return out


def mutual_neighbors(neighbors: np.ndarray) -> np.ndarray:
    """Keeps only mutual pairs of a k-NN graph, as a table of the same shape.

    `j` stays a neighbour of `i` when `i` is also among `j`'s neighbours
    (on the 8,000 real MNIST images at k=20 this keeps 52% of the pairs and
    raises the share with the same label from 88% to 95%). Each row's mutual
    neighbours are repeated to fill its `k` slots, so a uniform draw over the
    slots stays (nearly) uniform over them; a row with none keeps its nearest
    neighbour. Vectorised (no loop over rows or pairs).

    Args:
        neighbors: int `(N, k)` k-NN table, nearest first.

    Returns:
        int64 `(N, k)` table.
    """
    neighbors = np.asarray(neighbors, dtype="int64")
    return kept_pairs(neighbors, mutual_mask(neighbors))


def agreed_neighbors(neighbors: np.ndarray, other: np.ndarray, mutual: bool = False) -> np.ndarray:
    """Keeps the pairs of `neighbors` that `other`, a k-NN graph of another space, also lists.

    `j` stays a neighbour of `i` when `j` is also among `i`'s neighbours in
    `other` (and, with `mutual`, `i` among `j`'s in `neighbors`): two views
    of the images, e.g. the encoder's features and the pixels, agree on the
    pair. Filled like `mutual_neighbors` (a row with none keeps its nearest
    neighbour). On the 8,000 Fashion-MNIST training images at k = 20, the
    shipped model's feature pairs that the pixel graph also lists are 86%
    same-garment against 81% for its mutual feature pairs, with 6% of the
    images left without one.

    Args:
        neighbors: int `(N, k)` k-NN table, nearest first (the pairs kept).
        other: int `(N, k2)` k-NN table of the same images in another space.
        mutual: bool. Also require the pair to be mutual in `neighbors`.

    Returns:
        int64 `(N, k)` table.
    """
    neighbors = np.asarray(neighbors, dtype="int64")
    other = np.asarray(other, dtype="int64")
    if other.shape[0] != neighbors.shape[0]:
        raise ValueError(f"graphs of {neighbors.shape[0]} and {other.shape[0]} images")
    keep = np.empty(neighbors.shape, dtype=bool)
    for start in range(0, len(neighbors), MUTUAL_CHUNK_ROWS):
        rows = slice(start, start + MUTUAL_CHUNK_ROWS)
        keep[rows] = (neighbors[rows][:, :, None] == other[rows][:, None, :]).any(axis=-1)
    if mutual:
        keep &= mutual_mask(neighbors)
    return kept_pairs(neighbors, keep)


def kept_pairs(neighbors: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A k-NN table reduced to the pairs in the bool mask `keep`, still `(N, k)`.

    Each row's kept neighbours, in their order, are repeated to fill its `k`
    slots, so a uniform draw over the slots stays (nearly) uniform over them;
    a row with none keeps its nearest neighbour.
    """
    n, k = neighbors.shape
    keep = np.array(keep, dtype=bool)
    keep[:, 0] |= ~keep.any(axis=1)
    count = keep.sum(axis=1)
    first = np.argsort(~keep, axis=1, kind="stable")
    compact = np.take_along_axis(neighbors, first, axis=1)
    slots = np.arange(k)[None, :] % count[:, None]
    return np.take_along_axis(compact, slots, axis=1)


def mutual_mask(neighbors: np.ndarray, chunk: int = MUTUAL_CHUNK_ROWS) -> np.ndarray:
    """bool `(N, k)`: whether `neighbors[i, m]` lists `i` among its own neighbours.

    For a chunk of rows `i`, gathers the neighbour lists of their neighbours,
    `(chunk, k, k)`, and looks for `i` in each: O(N k^2) work, linear in N,
    with `chunk * k * k` int64 at once and no Python loop over pairs. (Sorting
    the N k pair keys and searching the reversed ones, the earlier way, gives
    the same mask but grew as N log N with cache misses: 36 s against 2.8 s on
    a random 1,000,000 x 20 table.)

    Args:
        neighbors: int `(N, k)` neighbour indices.
        chunk: int. Rows checked at once.
    """
    neighbors = np.asarray(neighbors, dtype="int64")
    n, k = neighbors.shape
    out = np.empty((n, k), dtype=bool)
    for start in range(0, n, chunk):
        block = neighbors[start : start + chunk]
        rows = np.arange(start, start + len(block), dtype="int64")
        out[start : start + chunk] = (neighbors[block] == rows[:, None, None]).any(axis=-1)
    return out
