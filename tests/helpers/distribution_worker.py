"""Subprocess worker for tests/training/test_distribution.py.

Usage: python distribution_worker.py STRATEGY DEVICES PRECISION
Sets up DEVICES simulated CPU devices for the current KERAS_BACKEND *before*
Keras is imported, builds configs/smoke.json under the strategy, and prints one
JSON line: the first-step loss on a fixed global batch, the loss after one
epoch, and the replica count.
"""

import json
import os
import sys

strategy, devices, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
if backend == "jax":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices
    )

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kmixvae.config import load_config  # noqa: E402
from kmixvae.models.factory import build_model  # noqa: E402
from kmixvae.training.distribution import configure_distribution  # noqa: E402

root = Path(__file__).resolve().parents[2]
config = load_config(
    root / "configs" / "smoke.json",
    [
        f"distribution.strategy={strategy}",
        f"precision={precision}",
        "loss.usage_entropy.weight=-3.0",
    ],
)
dist = configure_distribution(config)
dist.check_batch_size(config.data.batch_size)
keras.utils.set_random_seed(0)
keras.mixed_precision.set_dtype_policy(precision)
rng = np.random.default_rng(0)
x = (rng.random((config.data.batch_size * 4, 28, 28, 1)) > 0.7).astype("float32")
with dist.scope():
    model = build_model(config, (28, 28, 1))
    # Make q(z|x,c) nearly deterministic so that the loss compares exactly
    # across replica counts (each replica draws its own noise).
    bias = model.encoder.log_var_head.bias
    bias.assign(np.full(bias.shape, -40.0, "float32"))
    model.set_active_channels([0, 1, 2])
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
batch = config.data.batch_size
first = model.fit(x[:batch], batch_size=batch, epochs=1, shuffle=False, verbose=0).history
after = model.fit(x, batch_size=batch, epochs=1, shuffle=False, verbose=0).history
print(
    "RESULT "
    + json.dumps(
        {
            "first_loss": first["loss"][0],
            "first_usage_entropy": first["usage_entropy"][0],
            "epoch_loss": after["loss"][0],
            "replicas": dist.replicas,
            "strategy": dist.name,
        }
    )
)
