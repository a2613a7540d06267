"""Batch statistics and losses across `tf.distribute` replicas (identity on other backends)."""

from __future__ import annotations

import keras
from keras import ops


def _replica_context():
    """The TF replica context when it spans several replicas, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def mean_across_replicas(value):
    """Averages `value` over the replicas of a `tf.distribute` strategy.

    Under JAX (global SPMD view) or with one replica this is the identity.
    Used for batch statistics such as the usage p_bar, so that the loss on a
    global batch does not depend on how it is split across replicas.
    """
    ctx = _replica_context()
    if ctx is None:
        return value
    import tensorflow as tf

    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def scale_for_replicas(value):
    """Divides a per-replica loss by the replica count, as Keras' own losses are under
    `tf.distribute` (whose gradients are summed over replicas); identity elsewhere."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        value = ops.multiply(value, ops.cast(1.0 / replicas, value.dtype))
    return value
