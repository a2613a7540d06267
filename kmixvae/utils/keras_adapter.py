"""The one place that reaches past Keras' public API (keep it this small)."""

from __future__ import annotations


def learning_rate_schedule(optimizer):
    """The `LearningRateSchedule` object an optimizer was built with (or its float rate)."""
    # Keras 3 has no public accessor: `optimizer.learning_rate` evaluates the schedule.
    return optimizer._learning_rate


def sublayers(layer) -> list:
    """Every layer nested in `layer` (depth first), without `layer` itself."""
    # Keras 3 has no public recursive walk for a plain Layer (`Model.layers` is one level).
    return list(layer._flatten_layers(include_self=False, recursive=True))
