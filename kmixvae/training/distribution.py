"""Distribution strategies (the loss's cross-replica helpers are in `kmixvae.utils.replicas`).

This is one of the few places with backend-specific code: TensorFlow's
`tf.distribute` runs the loss once per replica, JAX's `keras.distribution`
runs it once on the global (sharded) batch.
"""

from __future__ import annotations

import keras

STRATEGIES = {
    "tensorflow": ("auto", "none", "data_parallel", "mirrored", "multi_worker_mirrored", "tpu"),
    "jax": ("auto", "none", "data_parallel"),
}


class Distribution:
    """The chosen strategy: its devices, a scope to build the model in, its replica count.

    Args:
        name: the resolved strategy name.
        devices: list of str. Devices the run uses.
        replicas: int. Data-parallel replicas.
        tf_strategy: a `tf.distribute.Strategy` (TensorFlow) or None.
    """

    def __init__(self, name: str, devices: list[str], replicas: int = 1, tf_strategy=None):
        self.name = name
        self.devices = devices
        self.replicas = int(replicas)
        self.tf_strategy = tf_strategy

    @property
    def description(self) -> str:
        return f"{self.name} ({self.replicas} replica{'s' if self.replicas != 1 else ''})"

    def scope(self):
        """Context in which the model and optimizer must be created."""
        import contextlib

        return (
            self.tf_strategy.scope() if self.tf_strategy is not None else contextlib.nullcontext()
        )

    def check_batch_size(self, batch_size: int) -> None:
        """`data.batch_size` is the global batch: it must split evenly over the replicas."""
        from kmixvae.errors import ConfigError

        if batch_size % self.replicas:
            raise ConfigError(
                f"data.batch_size: {batch_size} does not divide evenly over {self.replicas} replicas "
                f"of distribution.strategy={self.name!r}; use a multiple of {self.replicas}"
            )


def _jax_distribution(strategy: str) -> Distribution:
    import jax

    devices = jax.devices()
    names = [f"{d.platform}:{d.id}" for d in devices]
    if strategy == "none" or (strategy == "auto" and len(devices) == 1):
        keras.distribution.set_distribution(None)
        return Distribution("none", names[:1])
    dp = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(dp)
    return Distribution(
        "data_parallel (keras.distribution.DataParallel)", names, replicas=len(devices)
    )


def _tf_distribution(strategy: str) -> Distribution:
    import tensorflow as tf

    from kmixvae.errors import ConfigError

    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if strategy == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise ConfigError(
                f"distribution.strategy: 'tpu' but no TPU was found ({str(e).splitlines()[0][:120]})"
            ) from None
        s = tf.distribute.TPUStrategy(resolver)
        return Distribution(
            "tpu (tf.distribute.TPUStrategy)",
            [d.name for d in tf.config.list_logical_devices("TPU")],
            s.num_replicas_in_sync,
            s,
        )
    if strategy == "multi_worker_mirrored":
        s = tf.distribute.MultiWorkerMirroredStrategy()
        return Distribution(
            "multi_worker_mirrored (TF_CONFIG)",
            [d.name for d in gpus or cpus],
            s.num_replicas_in_sync,
            s,
        )
    devices = gpus or cpus
    if strategy in ("mirrored", "data_parallel") or (strategy == "auto" and len(gpus) > 1):
        s = tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
        return Distribution(
            f"{strategy} (tf.distribute.MirroredStrategy)",
            [d.name for d in devices],
            s.num_replicas_in_sync,
            s,
        )
    return Distribution("none", [devices[0].name])


def configure_distribution(config) -> Distribution:
    """Sets up `config.distribution.strategy` for the current backend.

    Must run before any Keras object is created. `auto` uses every visible
    accelerator of the backend (data parallel) and one CPU otherwise.
    """
    from kmixvae.errors import ConfigError

    backend = keras.backend.backend()
    strategy = config.distribution.strategy
    allowed = STRATEGIES.get(backend)
    if allowed is None:
        raise ConfigError(f"backend {backend!r} is not supported (use tensorflow or jax)")
    if strategy not in allowed:
        raise ConfigError(
            f"distribution.strategy: {strategy!r} is not available on the {backend} backend "
            f"(supported there: {', '.join(allowed)})"
        )
    if backend == "jax":
        return _jax_distribution(strategy)
    return _tf_distribution(strategy)
