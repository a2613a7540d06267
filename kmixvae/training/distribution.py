"""Distribution strategies (the loss's cross-replica helpers are in `kmixvae.utils.replicas`).

This is one of the few places with backend-specific code: TensorFlow's
`tf.distribute` runs the loss once per replica, JAX's `keras.distribution`
runs it once on the global (sharded) batch.

Several processes (JAX only): start the same command in every process with
Keras' variables `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator's
`host:port`, or every process's, comma-separated, coordinator first),
`KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`;
`data_parallel` (or `auto`) then calls `keras.distribution.initialize()` and
spans every process's devices. Each process reads its own slice of every
global batch (`Distribution.data_shard`); process 0 writes the run's files.
TensorFlow's multi-worker path does not work with Keras 3
(keras-team/keras#20585) and is rejected.

Example:

```python
dist = configure_distribution(config)  # before any Keras object exists
with dist.scope():
    model = build_model(config, image_shape)
```
"""

from __future__ import annotations

import os

import keras

from kmixvae.choices import STRATEGIES

PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
TF_MULTI_WORKER_BROKEN = (
    "TensorFlow's multi-worker training does not work with Keras 3 "
    "(keras-team/keras#20585); train on several hosts with the JAX backend "
    "(KERAS_BACKEND=jax, distribution.strategy=data_parallel and the "
    "KERAS_DISTRIBUTION_* variables; see the README)"
)


class Distribution:
    """The chosen strategy: its devices, a scope to build the model in, its replica count.

    Args:
        name: the resolved strategy name.
        devices: list of str. Devices the run uses (of every process).
        replicas: int. Data-parallel replicas.
        tf_strategy: a `tf.distribute.Strategy` (TensorFlow) or None.
        process_index: this process's index among `process_count` (JAX
            multi-process; 0 and 1 otherwise).
        process_count: processes training the model together.
    """

    def __init__(
        self,
        name: str,
        devices: list[str],
        replicas: int = 1,
        tf_strategy=None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        self.name = name
        self.devices = devices
        self.replicas = int(replicas)
        self.tf_strategy = tf_strategy
        self.process_index = int(process_index)
        self.process_count = int(process_count)

    @property
    def description(self) -> str:
        text = f"{self.name} ({self.replicas} replica{'s' if self.replicas != 1 else ''}"
        if self.process_count > 1:
            text += f", {self.process_count} processes, this is process {self.process_index}"
        return text + ")"

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run's files (process 0)."""
        return self.process_index == 0

    @property
    def data_shard(self) -> tuple[int, int]:
        """`(index, count)`: which contiguous slice of every global batch this process reads."""
        return self.process_index, self.process_count

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

    def check_split_batches(
        self, key: str, examples: int, batch_size: int, way_out: str = ""
    ) -> None:
        """Over several processes every batch of a split, the last included, must split evenly.

        Each process reads an equal slice of every global batch; a last batch
        of `examples % batch_size` images that does not split over the
        replicas cannot be assembled. `way_out`, when given, is one more
        remedy the error names (e.g. a setting that drops that batch).
        """
        from kmixvae.errors import ConfigError

        last = examples % batch_size
        if self.process_count > 1 and last % self.replicas:
            raise ConfigError(
                f"{key}: its {examples} images leave a last batch of {last}, which does not "
                f"split over the {self.replicas} replicas of {self.process_count} processes; "
                f"use a split whose size is a multiple of {self.replicas} (or of "
                f"data.batch_size={batch_size})" + (f", or {way_out}" if way_out else "")
            )


def requested_processes() -> int:
    """The process count Keras' `KERAS_DISTRIBUTION_NUM_PROCESSES` asks for (1 if unset)."""
    from kmixvae.errors import ConfigError

    raw = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "").strip()
    if not raw:
        return 1
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"KERAS_DISTRIBUTION_NUM_PROCESSES: {raw!r} is not a process count")
    return count


def _initialize_processes(strategy: str) -> None:
    """`keras.distribution.initialize()` from Keras' variables, with one-line errors."""
    import jax

    from kmixvae.errors import ConfigError

    if strategy == "none":
        raise ConfigError(
            "distribution.strategy: 'none' trains in one process, but "
            "KERAS_DISTRIBUTION_NUM_PROCESSES asks for several; use data_parallel or auto"
        )
    missing = [v for v in PROCESS_VARIABLES if not os.environ.get(v, "").strip()]
    if missing:
        raise ConfigError(
            f"{missing[0]}: not set; several processes need all of {', '.join(PROCESS_VARIABLES)}"
        )
    if jax.distributed.is_initialized():
        return
    # cross-process collectives of the CPU backend (GPUs and TPUs have their own)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES: joining the processes failed ({first[:160]})"
        ) from None


def _jax_distribution(strategy: str) -> Distribution:
    import jax

    processes = requested_processes()
    if processes > 1:
        _initialize_processes(strategy)
    devices = jax.devices()
    names = [f"{d.platform}:{d.id}" for d in devices]
    if processes == 1 and (strategy == "none" or (strategy == "auto" and len(devices) == 1)):
        keras.distribution.set_distribution(None)
        return Distribution("none", names[:1])
    # The pipelines shard the data themselves (`Distribution.data_shard`).
    dp = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(dp)
    return Distribution(
        "data_parallel (keras.distribution.DataParallel)",
        names,
        replicas=len(devices),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
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
        raise ConfigError(
            f"distribution.strategy: 'multi_worker_mirrored': {TF_MULTI_WORKER_BROKEN}"
        )
    if requested_processes() > 1:
        raise ConfigError(f"KERAS_DISTRIBUTION_NUM_PROCESSES: {TF_MULTI_WORKER_BROKEN}")
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
