"""Clustering metrics and the per-channel specialisation report (numpy in, numbers out).

Example:

```python
labels = np.array([0, 0, 1, 1])
assignments = np.array([1, 1, 0, 0])
clustering_accuracy(labels, assignments)  # 1.0 (clusters are renamed freely)
report = channel_report(labels, assignments, q, num_channels=2)
report["specialised_count"], report["garbage_channels"]
```
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _check_pair(labels, assignments) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    assignments = np.asarray(assignments).reshape(-1)
    if labels.shape != assignments.shape:
        raise ValueError(
            f"labels and assignments differ in length: {labels.shape[0]} vs {assignments.shape[0]}"
        )
    if labels.size == 0:
        raise ValueError("labels and assignments are empty")
    return labels, assignments


def contingency(labels, assignments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of (cluster, label) pairs.

    Args:
        labels: `(N,)` true labels (any hashable numpy values).
        assignments: `(N,)` cluster ids.

    Returns:
        `(counts, clusters, classes)`: `counts[i, j]` is the number of images
        of cluster `clusters[i]` with label `classes[j]`.
    """
    labels, assignments = _check_pair(labels, assignments)
    classes, y = np.unique(labels, return_inverse=True)
    clusters, a = np.unique(assignments, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (a, y), 1)
    return counts, clusters, classes


def clustering_accuracy(labels, assignments) -> float:
    """Accuracy under the best one-to-one mapping of clusters to labels.

    The mapping is found with the Hungarian algorithm on the contingency
    table. With more clusters than labels, only one cluster per label is
    matched and the images of the unmatched clusters count as errors (so
    the score is not inflated by over-clustering; see `purity` for the
    many-to-one variant).

    Args:
        labels: `(N,)` true labels.
        assignments: `(N,)` cluster ids (e.g. argmax q(c|x)).

    Returns:
        float in [0, 1].

    Example:

    ```python
    clustering_accuracy([0, 0, 1, 1], [5, 5, 3, 3])  # 1.0
    clustering_accuracy([0, 1, 2, 3], [0, 0, 0, 0])  # 0.25
    ```
    """
    counts, _, _ = contingency(labels, assignments)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def cluster_label_matching(labels, assignments) -> dict:
    """The one-to-one mapping of clusters to labels that `clustering_accuracy` scores.

    The same Hungarian matching on the same contingency table: a cluster
    that owns no image, or that loses its label to another cluster (more
    clusters than labels), is absent from the result.

    Args:
        labels: `(N,)` true labels.
        assignments: `(N,)` cluster ids.

    Returns:
        dict `{cluster id: label}` (python scalars).

    Example:

    ```python
    cluster_label_matching([0, 0, 1, 1], [5, 5, 3, 3])  # {3: 1, 5: 0}
    ```
    """
    counts, clusters, classes = contingency(labels, assignments)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {clusters[r].item(): classes[c].item() for r, c in zip(rows, cols)}


def purity(labels, assignments) -> float:
    """Many-to-one accuracy: each cluster is mapped to its majority label.

    Args:
        labels: `(N,)` true labels.
        assignments: `(N,)` cluster ids.

    Returns:
        float in [0, 1]; reaches 1 with one cluster per image, so read it
        together with `clustering_accuracy`.
    """
    counts, _, _ = contingency(labels, assignments)
    return float(counts.max(axis=1).sum() / counts.sum())


def nmi(labels, assignments) -> float:
    """Normalised mutual information (arithmetic normalisation, as sklearn).

    Args:
        labels: `(N,)` true labels.
        assignments: `(N,)` cluster ids.

    Returns:
        float in [0, 1].
    """
    labels, assignments = _check_pair(labels, assignments)
    return float(normalized_mutual_info_score(labels, assignments))


def ari(labels, assignments) -> float:
    """Adjusted Rand index (0 for a random clustering, 1 for a perfect one).

    Args:
        labels: `(N,)` true labels.
        assignments: `(N,)` cluster ids.

    Returns:
        float in [-0.5, 1].
    """
    labels, assignments = _check_pair(labels, assignments)
    return float(adjusted_rand_score(labels, assignments))


def channel_report(
    labels,
    assignments,
    q,
    num_channels: int,
    usage_min: float = 0.02,
    purity_min: float = 0.80,
    active_channels: Sequence[int] | None = None,
) -> dict:
    """Per-channel usage, purity and confidence, and which channels specialised.

    A channel owns the images assigned to it (`assignments`, normally the
    argmax of q(c|x)). It is *specialised* when it owns at least `usage_min`
    of the images and at least `purity_min` of them share one label.
    *Garbage* channels are the active channels that are not specialised.

    Args:
        labels: `(N,)` true labels.
        assignments: `(N,)` int channel of each image, in `0..num_channels-1`.
        q: `(N, K)` posteriors q(c|x), or `(N,)` max-confidence max_c q(c|x)
            of each image (enough here, and K times smaller).
        num_channels: int. K.
        usage_min: float. Minimum share of images (default 0.02 = 2%).
        purity_min: float. Minimum share of the majority label among the
            images a channel owns (default 0.80).
        active_channels: channel ids that count as active (default: all K).

    Returns:
        dict with `channels`: one dict per channel (`channel`, `active`,
        `count`, `usage`, `purity`, `majority_label`, `confidence`,
        `specialised`; `purity`, `majority_label` and `confidence` are None
        for a channel that owns no image), `specialised_count` (int),
        `specialised_channels` and `garbage_channels` (lists of int),
        `usage_min`, `purity_min`.

    Example:

    ```python
    rep = channel_report(y, enc["channel"], enc["q"], model.num_channels,
                         active_channels=model.active_channels)
    rep["specialised_count"]
    ```
    """
    labels, assignments = _check_pair(labels, assignments)
    assignments = assignments.astype(np.int64)
    num_channels = int(num_channels)
    if assignments.min() < 0 or assignments.max() >= num_channels:
        raise ValueError(f"assignments must lie in 0..{num_channels - 1}")
    q = np.asarray(q, dtype=np.float64)
    conf = q.max(axis=1) if q.ndim == 2 else q.reshape(-1)
    if conf.shape != labels.shape:
        raise ValueError(f"q has {conf.shape[0]} rows, expected {labels.shape[0]}")
    active = set(range(num_channels) if active_channels is None else map(int, active_channels))
    n = labels.size
    channels = []
    for c in range(num_channels):
        own = assignments == c
        count = int(own.sum())
        usage = count / n
        if count:
            values, freq = np.unique(labels[own], return_counts=True)
            best = int(freq.argmax())
            pur = float(freq[best] / count)
            majority = values[best].item()
            confidence = float(conf[own].mean())
        else:
            pur, majority, confidence = None, None, None
        specialised = bool(count and usage >= usage_min and pur >= purity_min)
        channels.append(
            {
                "channel": c,
                "active": c in active,
                "count": count,
                "usage": float(usage),
                "purity": pur,
                "majority_label": majority,
                "confidence": confidence,
                "specialised": specialised,
            }
        )
    specialised = [ch["channel"] for ch in channels if ch["specialised"]]
    garbage = [ch["channel"] for ch in channels if ch["active"] and not ch["specialised"]]
    return {
        "channels": channels,
        "specialised_count": len(specialised),
        "specialised_channels": specialised,
        "garbage_channels": garbage,
        "usage_min": float(usage_min),
        "purity_min": float(purity_min),
    }


__all__ = [
    "ari",
    "channel_report",
    "cluster_label_matching",
    "clustering_accuracy",
    "contingency",
    "nmi",
    "purity",
]
