"""Distribution strategies and the cross-replica helpers the loss needs.

This is one of the few places with backend-specific code: TensorFlow's
`tf.distribute` runs the loss once per replica, JAX's `keras.distribution`
runs it once on the global (sharded) batch.
"""

from __future__ import annotations

import keras


def mean_across_replicas(value):
    """Averages `value` over the replicas of a `tf.distribute` strategy.

    Under JAX (global SPMD view) or with one replica this is the identity.
    Used for batch statistics such as the usage p_bar, so that the loss on a
    global batch does not depend on how it is split across replicas.
    """
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, value)
