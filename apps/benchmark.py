"""Training/inference throughput, compile time, memory and FLOP utilisation of kmixvae.

The parent process starts one worker subprocess per Keras backend (the same
file with `--worker`, `KERAS_BACKEND` set). Each worker builds every config on
synthetic 28x28x1 images in [0, 1] (no data files) and, for each number of
active channels k in (10, 1), measures after warm-up and compilation:

- training throughput (images/s) of `model.fit` on an in-memory pipeline
  (`tf.data`, or `keras.utils.PyDataset` where TensorFlow is not installed;
  `data.pipeline` picks) with `steps_per_epoch`, timed over the epochs after
  the first;
- inference throughput of `model.encode` and `model.reconstruct`;
- the first-step (trace + compile) time;
- the peak resident memory of the worker (ru_maxrss, cumulative over its stages)
  and, on a GPU, the accelerator's peak memory in use;
- the model cost in FLOPs per training image, counted from the shapes the
  Conv2D/Dense/FiLM layers see in one forward pass of the real training step
  (the encoder once per view, the decoder once per decoded row of the ELBO
  sub-batch; training = 3 x forward), checked on JAX against XLA's own cost
  analysis of the same step;
- the achieved GFLOP/s, the machine's float32 GEMM GFLOP/s (numpy, same run)
  and their ratio;
- the number of train-step retraces / XLA compilations after warm-up (should be 0).

The parent prints a table and writes everything as JSON.

Usage:

    python apps/benchmark.py [--quick] [--json OUT] [--backends tensorflow,jax]
                             [--configs configs/film_het.json,configs/concat_het.json]
                             [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

APPS_DIR = str(Path(__file__).resolve().parent)
if APPS_DIR not in sys.path:  # loaded from a file, not run as a script: find apps/machine.py
    sys.path.append(APPS_DIR)
from machine import installed_backends, package_version, peak_accelerator_mb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = ("configs/film_het.json", "configs/concat_het.json")
K_VALUES = (10, 1)
IMAGE_SHAPE = (28, 28, 1)
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

REQUIRED_KEYS = (
    "backend",
    "config",
    "k_active",
    "batch_size",
    "train_images_per_s",
    "encode_images_per_s",
    "reconstruct_images_per_s",
    "compile_s",
    "peak_rss_mb",
    "gflop_per_image",
    "xla_gflop_per_image",
    "achieved_gflops",
    "machine_gemm_gflops",
    "utilisation",
    "compilations_after_warmup",
    "device",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long each measurement runs."""

    batch_size: int = 128
    warmup_steps: int = 2  # after the first (compiling) step
    steps_per_epoch: int = 12
    epochs: int = 4  # the first one is not timed
    infer_images: int = 2048
    infer_batch: int = 512
    infer_repeats: int = 3
    gemm_size: int = 2048
    gemm_repeats: int = 5
    xla_cost: str = "compiled"  # XLA cost analysis of "compiled" / "lowered" HLO, or "none"


FULL = Settings()
QUICK = Settings(
    warmup_steps=0,  # the untimed first epoch of the timed fit is the warm-up
    steps_per_epoch=3,
    epochs=3,
    infer_images=1024,
    infer_repeats=2,
    gemm_repeats=3,
    xla_cost="lowered",  # no extra XLA compile
)


# --------------------------------------------------------------------------- machine


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Static facts about this machine and the installed versions (no heavy imports)."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # pragma: no cover - psutil is a dependency
        physical = None
    return {
        "cores": os.cpu_count(),
        "physical_cores": physical,
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "keras": package_version("keras"),
        "tensorflow": package_version("tensorflow-cpu") or package_version("tensorflow"),
        "jax": package_version("jax"),
        "jaxlib": package_version("jaxlib"),
        "numpy": np.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "gpu": [],
        "loadavg_start": list(os.getloadavg()),
    }


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` float32 numpy matmul speed (GFLOP/s) of an n x n product."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up (thread pool start)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def device_names() -> list[str]:
    """Accelerators (or the CPU) the current Keras backend computes on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{getattr(d, 'device_kind', d.platform)}" for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        names = []
        for gpu in gpus:
            try:
                details = tf.config.experimental.get_device_details(gpu)
                names.append(f"gpu:{details.get('device_name', gpu.name)}")
            except Exception:
                names.append(f"gpu:{gpu.name}")
        return names or ["cpu"]
    return [backend]


# --------------------------------------------------------------------------- FLOPs


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def layer_flops(layer, in_shape, out_shape) -> int:
    """FLOPs of one call of a Conv2D, Dense or FiLM layer (multiply-add = 2 FLOPs).

    Conv: 2 * H_out * W_out * k_h * k_w * C_in/groups * C_out per image; Dense:
    2 * in * out per row; FiLM: one multiply and one add per feature value.
    Biases and activations are not counted.
    """
    import keras

    from kmixvae.layers.film import FiLM

    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin_per_group, cout = (int(s) for s in layer.kernel.shape)
        n, ho, wo = int(out_shape[0]), int(out_shape[1]), int(out_shape[2])
        return 2 * n * ho * wo * kh * kw * cin_per_group * cout
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = (int(s) for s in layer.kernel.shape)
        rows = _numel(in_shape[:-1])
        return 2 * rows * fan_in * units
    if isinstance(layer, FiLM):
        return 2 * _numel(out_shape)
    return 0


def count_step_flops(model, batch) -> dict:
    """Forward FLOPs per image of one training step, from the shapes its layers see.

    Every Conv2D / Dense / FiLM layer inside the encoder and the decoder is
    wrapped (its `call` patched, then restored: Keras has no public per-layer
    call hook) for one eager `model(batch, training=True)`, the forward pass the
    train step differentiates: it counts the encoder once per view (the image,
    its augmented neighbour, ...) and the decoder once per decoded row (the
    ELBO sub-batch times the active channels). Each call's FLOPs come from its
    input/output shapes (`layer_flops`); totals are divided by the batch size.

    Returns:
        dict with `encoder_flops` and `decoder_flops` (forward FLOPs per
        training image), `encoder_rows` / `decoder_rows` (rows each part
        saw per training image) and `layers` (layer path -> FLOPs per image).
    """
    import keras

    from kmixvae.layers.film import FiLM
    from kmixvae.utils.keras_adapter import sublayers

    kinds = (keras.layers.Conv2D, keras.layers.Dense, FiLM)
    totals = {"encoder": 0, "decoder": 0}
    rows = {"encoder": 0, "decoder": 0}
    per_layer: dict[str, int] = {}
    patched = []

    def wrap(layer, part, first):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            flops = layer_flops(layer, tuple(args[0].shape), tuple(out.shape))
            totals[part] += flops
            per_layer[layer.path] = per_layer.get(layer.path, 0) + flops
            if first:
                rows[part] += int(args[0].shape[0])
            return out

        layer.call = call
        patched.append(layer)

    for part_name, part in (("encoder", model.encoder), ("decoder", model.decoder)):
        layers = [layer for layer in sublayers(part) if isinstance(layer, kinds)]
        for i, layer in enumerate(layers):
            wrap(layer, part_name, first=i == 0)
    x = batch["x"] if isinstance(batch, dict) else batch
    n = int(x.shape[0])
    try:
        model(batch, training=True)
    finally:
        for layer in patched:
            del layer.call
    return {
        "encoder_flops": totals["encoder"] / n,
        "decoder_flops": totals["decoder"] / n,
        "encoder_rows": rows["encoder"] / n,
        "decoder_rows": rows["decoder"] / n,
        "layers": {path: flops / n for path, flops in per_layer.items()},
    }


def train_flops_per_image(counts: dict) -> float:
    """Training = forward + backward ~= 3 x forward."""
    return 3 * (counts["encoder_flops"] + counts["decoder_flops"])


def xla_flops_per_image(model, batch, stage: str = "compiled") -> dict:
    """XLA's cost analysis of the training loss (forward) and of its gradient, per image (JAX only).

    `batch` is one real training batch (images, or the `{"x", "neighbor"}`
    pairs), so XLA sees the same views and ELBO sub-batch as the train step.
    `stage="compiled"` analyses the optimised executable (one XLA compile per
    function); `"lowered"` the HLO before optimisation (no compile).

    Returns `{"forward": float|None, "train": float|None}` (FLOPs per image).
    """
    import keras

    if keras.backend.backend() != "jax":
        return {"forward": None, "train": None}
    import jax
    import jax.numpy as jnp

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    inputs = jax.tree_util.tree_map(jnp.asarray, batch)
    x = inputs["x"] if isinstance(inputs, dict) else inputs
    n = int(x.shape[0])

    def loss_fn(tv, ntv, inputs):
        mapping = list(zip(model.trainable_variables, tv)) + list(
            zip(model.non_trainable_variables, ntv)
        )
        with keras.StatelessScope(state_mapping=mapping):
            terms = model(inputs, training=True)
            return model.loss_terms(terms)["loss"]

    def flops(fn):
        try:
            lowered = jax.jit(fn).lower(tv, ntv, inputs)
            cost = (lowered.compile() if stage == "compiled" else lowered).cost_analysis()
            if isinstance(cost, (list, tuple)):
                cost = cost[0] if cost else {}
            value = (cost or {}).get("flops")
            return None if value is None or value <= 0 else float(value) / n
        except Exception as e:  # cost analysis is best-effort
            print(f"  xla cost analysis failed: {type(e).__name__}: {e}", flush=True)
            return None

    return {"forward": flops(loss_fn), "train": flops(jax.value_and_grad(loss_fn))}


# --------------------------------------------------------------------------- compile counting


class CompileCounter:
    """Counts train-step traces (both backends) and XLA backend compilations (JAX).

    `install(model)` makes every new train function trace a fresh wrapper of
    `model.train_step` whose Python body runs only when `tf.function` /
    `jax.jit` traces it, so each call is a (re)trace. The wrapper must be new
    for each train function: `jax.jit` caches traces by function identity, and
    reusing one wrapper would let a re-made train function (e.g. after
    `set_active_channels`) hit the stale trace of the previous stage.
    """

    _jax_compiles = 0
    _jax_listener = False

    def __init__(self):
        self.traces = 0

    def install(self, model) -> None:
        original_step = model.train_step
        original_make = model.make_train_function

        def fresh_step():
            def train_step(*args, **kwargs):
                self.traces += 1
                return original_step(*args, **kwargs)

            return train_step

        def make_train_function(force=False):
            if force or model.train_function is None:
                model.train_step = fresh_step()
            return original_make(force=force)

        model.make_train_function = make_train_function
        import keras

        if keras.backend.backend() == "jax" and not CompileCounter._jax_listener:
            import jax.monitoring

            def listener(event, duration_secs=0.0, **kwargs):
                if event == BACKEND_COMPILE_EVENT:
                    CompileCounter._jax_compiles += 1

            jax.monitoring.register_event_duration_secs_listener(listener)
            CompileCounter._jax_listener = True

    def snapshot(self) -> tuple[int, int]:
        return self.traces, CompileCounter._jax_compiles


# --------------------------------------------------------------------------- measurement


def synthetic_images(n: int, seed: int = 0) -> np.ndarray:
    """`n` float32 images `(n, 28, 28, 1)` in [0, 1]: random blobs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype("float32")
    cy, cx = rng.uniform(6, 22, (2, n, 1, 1)).astype("float32")
    r = rng.uniform(3, 8, (n, 1, 1)).astype("float32")
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    noise = 0.1 * rng.random((n, 28, 28), dtype=np.float32)
    return np.clip(blob + noise, 0.0, 1.0).astype("float32")[..., None]


def make_dataset(x: np.ndarray, batch_size: int, neighbors: int = 0, pipeline: str = "auto"):
    """Infinite in-memory pipeline of fixed-shape batches.

    `tf.data` or a repeating `keras.utils.PyDataset`, as `data.pipeline`
    (`pipeline`) resolves. With `neighbors > 0` (a config with
    `data.neighbors`) it yields the `{"x", "neighbor"}` pairs that `kmixvae
    fit` trains on, so the timed step is the real one (the encoder then sees
    both images of each pair).
    """
    from kmixvae.data.pipeline import resolve_pipeline

    if resolve_pipeline(pipeline) == "arrays":
        from kmixvae.data.array_dataset import ImageBatches, NeighborPairBatches

        if neighbors > 0:
            from kmixvae.data.neighbors import pixel_neighbors

            nbr = pixel_neighbors(x, neighbors)
            return NeighborPairBatches(x, nbr, batch_size, seed=0, drop_remainder=True, repeat=True)
        return ImageBatches(x, batch_size=batch_size, drop_remainder=True, repeat=True)

    if neighbors > 0:
        from kmixvae.data.neighbors import pixel_neighbors
        from kmixvae.data.pipeline import make_neighbor_dataset

        nbr = pixel_neighbors(x, neighbors)
        return make_neighbor_dataset(x, nbr, batch_size, seed=0, drop_remainder=True).repeat()
    from kmixvae.data.pipeline import make_dataset as make_image_dataset

    # kmixvae's own image pipeline, as `kmixvae fit` reads it (tf.data's autotuner off).
    return make_image_dataset(x, None, batch_size, drop_remainder=True, repeat=True)


def wait_for(logs) -> None:
    """Blocks until the step that produced `logs` has finished (async dispatch): a timer
    read after it times the step, not its dispatch."""
    for value in (logs or {}).values():
        np.asarray(value)


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            wait_for(logs)
            self.ends.append(time.perf_counter())

    return EpochTimer()


def _fit(model, ds, epochs: int, steps: int, callbacks=()):
    return model.fit(
        ds,
        epochs=epochs,
        steps_per_epoch=steps,
        shuffle=False,
        verbose=0,
        callbacks=list(callbacks),
    )


def _infer_rate(fn, x, repeats: int, counter) -> tuple[float, int]:
    """Best-of-`repeats` images/s of `fn(x)` after one warm-up call, and the
    XLA compilations during the timed calls."""
    fn(x)  # warm-up (eager kernels, JAX per-op compiles)
    compiles0 = counter.snapshot()[1]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best, counter.snapshot()[1] - compiles0


def measure_stage(model, ds, x_infer, k_active: int, settings: Settings, counter) -> dict:
    """Trains and infers with `k_active` channels; returns the timing fields."""
    traces_start = counter.snapshot()[0]
    model.set_active_channels(list(range(k_active)))
    t0 = time.perf_counter()
    _fit(model, ds, epochs=1, steps=1)
    compile_s = time.perf_counter() - t0
    if settings.warmup_steps:
        _fit(model, ds, epochs=1, steps=settings.warmup_steps)
    traces0, compiles0 = counter.snapshot()
    timer = _epoch_timer()
    _fit(model, ds, epochs=settings.epochs, steps=settings.steps_per_epoch, callbacks=[timer])
    traces1, compiles1 = counter.snapshot()
    ends = timer.ends
    images_per_epoch = settings.batch_size * settings.steps_per_epoch
    epoch_s = np.diff(ends)  # the epochs after the first
    train_rate = images_per_epoch * len(epoch_s) / float(ends[-1] - ends[0])
    first_epoch_s = ends[0] - timer.start

    encode, encode_compiles = _infer_rate(
        lambda x: model.encode(x, batch_size=settings.infer_batch),
        x_infer,
        settings.infer_repeats,
        counter,
    )
    recon, recon_compiles = _infer_rate(
        lambda x: model.reconstruct(x, batch_size=settings.infer_batch),
        x_infer,
        settings.infer_repeats,
        counter,
    )
    return {
        "train_images_per_s": train_rate,
        "train_images_per_s_best_epoch": images_per_epoch / float(epoch_s.min()),
        "train_step_ms": 1e3
        * float(ends[-1] - ends[0])
        / (len(epoch_s) * settings.steps_per_epoch),
        "train_first_timed_epoch_s": first_epoch_s,
        "timed_steps": len(epoch_s) * settings.steps_per_epoch,
        "encode_images_per_s": encode,
        "reconstruct_images_per_s": recon,
        "compile_s": compile_s,
        "retraces_after_warmup": traces1 - traces0,
        "xla_compiles_after_warmup": compiles1 - compiles0,
        "compilations_after_warmup": (traces1 - traces0) + (compiles1 - compiles0),
        # traces of this stage's train step (>= 1: the stage's step was really re-made)
        "stage_traces": traces1 - traces_start,
        "inference_xla_compiles_after_warmup": encode_compiles + recon_compiles,
    }


def run_worker(
    config_paths,
    settings: Settings = FULL,
    k_values=K_VALUES,
    overrides=(),
    log=print,
) -> list[dict]:
    """Runs every (config, k) stage on the current Keras backend; returns the records."""
    import keras

    from kmixvae.config import load_config
    from kmixvae.data.pipeline import resolve_pipeline
    from kmixvae.models.factory import build_model

    backend = keras.backend.backend()
    devices = device_names()
    gemm = gemm_gflops(settings.gemm_size, settings.gemm_repeats)
    log(f"[{backend}] devices {devices}; numpy float32 GEMM {gemm:.1f} GFLOP/s")
    # `import kmixvae` (above) adds its XLA:CPU flag (kmixvae.utils.xla_cpu_flags).
    xla_flags = os.environ.get("XLA_FLAGS", "") if backend == "jax" else None
    if xla_flags:
        log(f"[{backend}] XLA_FLAGS={xla_flags}")
    x_train = synthetic_images(max(4 * settings.batch_size, 1024), seed=0)
    x_infer = synthetic_images(settings.infer_images, seed=1)
    records = []
    for path in config_paths:
        config = load_config(path, overrides=list(overrides))
        keras.utils.set_random_seed(config.seed)
        model = build_model(config, IMAGE_SHAPE)
        counter = CompileCounter()
        counter.install(model)
        model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate))
        ds = make_dataset(x_train, settings.batch_size, config.data.neighbors, config.data.pipeline)
        probe = next(iter(ds)) if hasattr(ds, "element_spec") else ds[0]
        if isinstance(probe, tuple):
            probe = probe[0]
        probe = (
            {name: np.asarray(v) for name, v in probe.items()}
            if isinstance(probe, dict)
            else np.asarray(probe)
        )
        for k in k_values:
            log(f"[{backend}] {config.name} k={k} ...")
            t0 = time.perf_counter()
            stage = measure_stage(model, ds, x_infer, k, settings, counter)
            counts = count_step_flops(model, probe)
            xla = (
                xla_flops_per_image(model, probe, stage=settings.xla_cost)
                if settings.xla_cost != "none"
                else {"forward": None, "train": None}
            )
            fwd = counts["encoder_flops"] + counts["decoder_flops"]
            train = train_flops_per_image(counts)
            gflop = train / 1e9
            achieved = gflop * stage["train_images_per_s"]
            record = {
                "backend": backend,
                "config": config.name,
                "config_path": str(path),
                "k_active": k,
                "batch_size": settings.batch_size,
                "xla_flags": xla_flags,
                **stage,
                "peak_rss_mb": peak_rss_mb(),
                "peak_accelerator_mb": peak_accelerator_mb(),
                "input_pipeline": resolve_pipeline(config.data.pipeline),
                "gflop_per_image": gflop,
                "forward_gflop_per_image": fwd / 1e9,
                "encoder_mflop_per_image": counts["encoder_flops"] / 1e6,
                "decoder_mflop_per_image": counts["decoder_flops"] / 1e6,
                "encoder_rows_per_image": counts["encoder_rows"],
                "decoder_rows_per_image": counts["decoder_rows"],
                "xla_gflop_per_image": None if xla["train"] is None else xla["train"] / 1e9,
                "xla_forward_gflop_per_image": None
                if xla["forward"] is None
                else xla["forward"] / 1e9,
                "xla_cost_source": settings.xla_cost if backend == "jax" else None,
                "achieved_gflops": achieved,
                "machine_gemm_gflops": gemm,
                "utilisation": achieved / gemm,
                "jit_compile": bool(model.jit_compile),
                "device": ",".join(devices),
                "loadavg_1min": os.getloadavg()[0],
                "stage_s": time.perf_counter() - t0,
            }
            records.append(record)
            log(
                f"[{backend}] {config.name} k={k}: train {record['train_images_per_s']:.0f} img/s, "
                f"encode {record['encode_images_per_s']:.0f}, "
                f"reconstruct {record['reconstruct_images_per_s']:.0f}, "
                f"compile {record['compile_s']:.1f}s, util {record['utilisation']:.3f}, "
                f"recompiles {record['compilations_after_warmup']} "
                f"({record['stage_s']:.0f}s)"
            )
        del model
    # The GEMM again at the end: the best of both is the machine's figure.
    gemm_end = gemm_gflops(settings.gemm_size, settings.gemm_repeats)
    best = max(gemm, gemm_end)
    for r in records:
        r["machine_gemm_gflops"] = best
        r["utilisation"] = r["achieved_gflops"] / best
    return records


# --------------------------------------------------------------------------- report


def derive(records: list[dict]) -> dict:
    """k=1 over k=10 per-image train speed-up and JAX over TF train ratio."""
    by = {(r["backend"], r["config"], r["k_active"]): r for r in records}
    speedup = {}
    for (backend, config, k), r in by.items():
        if k == 1 and (backend, config, 10) in by:
            ten = by[(backend, config, 10)]["train_images_per_s"]
            speedup[f"{backend}/{config}"] = r["train_images_per_s"] / ten
    ratio = {}
    for (backend, config, k), r in by.items():
        if backend == "jax" and ("tensorflow", config, k) in by:
            tf_rate = by[("tensorflow", config, k)]["train_images_per_s"]
            ratio[f"{config}/k={k}"] = r["train_images_per_s"] / tf_rate
    return {"k1_over_k10_speedup": speedup, "jax_over_tf_train": ratio}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(records: list[dict], derived: dict | None = None) -> str:
    cols = (
        ("backend", "backend", "s"),
        ("config", "config", "s"),
        ("k", "k_active", "d"),
        ("train img/s", "train_images_per_s", ".0f"),
        ("step ms", "train_step_ms", ".1f"),
        ("encode img/s", "encode_images_per_s", ".0f"),
        ("recon img/s", "reconstruct_images_per_s", ".0f"),
        ("compile s", "compile_s", ".1f"),
        ("peak MB", "peak_rss_mb", ".0f"),
        ("accel MB", "peak_accelerator_mb", ".0f"),
        ("GF/img", "gflop_per_image", ".4f"),
        ("XLA GF/img", "xla_gflop_per_image", ".4f"),
        ("GFLOP/s", "achieved_gflops", ".1f"),
        ("GEMM GF/s", "machine_gemm_gflops", ".0f"),
        ("util", "utilisation", ".3f"),
        ("recompiles", "compilations_after_warmup", "d"),
    )
    header = [c[0] for c in cols]
    rows = [[_fmt(r.get(key), spec) for _, key, spec in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths)) + " |")
    if derived:
        for name, values in derived.items():
            if values:
                items = ", ".join(f"{k} {v:.2f}x" for k, v in values.items())
                lines.append(f"{name}: {items}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def _worker_main(args) -> int:
    settings = QUICK if args.quick else FULL
    records = run_worker(
        args.configs, settings, overrides=args.set, log=lambda m: print(m, flush=True)
    )
    Path(args.out).write_text(json.dumps(records, indent=2))
    return 0


def _spawn(backend: str, args, out: Path) -> tuple[int, float]:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(out)]
    cmd += ["--configs", ",".join(args.configs)]
    for override in args.set:
        cmd += ["--set", override]
    if args.quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, timeout=args.worker_timeout)
    return proc.returncode, time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (< 3 min)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated (default: those of tensorflow, jax that are installed)",
    )
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override applied to every config (as `kmixvae fit --set`), repeatable",
    )
    parser.add_argument("--worker-timeout", type=float, default=1200.0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for i, c in enumerate(args.configs):
        if not Path(c).is_absolute() and not Path(c).exists() and (REPO_ROOT / c).exists():
            args.configs[i] = str(REPO_ROOT / c)
    if args.worker:
        return _worker_main(args)
    from kmixvae.config import load_config
    from kmixvae.errors import KmixvaeError

    for path in args.configs:  # a bad config or override fails here, before any worker
        try:
            load_config(path, overrides=list(args.set))
        except KmixvaeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    if args.backends is None:
        backends = installed_backends()
    else:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        missing = [b for b in backends if b not in installed_backends(backends)]
        if missing:
            print(f"error: --backends: {', '.join(missing)} not installed here", file=sys.stderr)
            return 2
    if not backends:
        print("error: neither TensorFlow nor JAX is installed", file=sys.stderr)
        return 2

    machine = machine_info()
    t_start = time.perf_counter()
    records, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            out = Path(tmp) / f"{backend}.json"
            print(f"== worker {backend}", flush=True)
            try:
                rc, wall = _spawn(backend, args, out)
            except subprocess.TimeoutExpired:
                rc, wall = -1, args.worker_timeout
            print(f"== worker {backend}: exit {rc} after {wall:.0f}s", flush=True)
            if rc != 0 or not out.exists():
                failed.append(backend)
                continue
            records.extend(json.loads(out.read_text()))
    machine["loadavg_end"] = list(os.getloadavg())
    machine["total_s"] = time.perf_counter() - t_start
    machine["mode"] = "quick" if args.quick else "full"
    machine["overrides"] = list(args.set)
    machine["command"] = " ".join(["python", "apps/benchmark.py", *(argv or sys.argv[1:])])
    machine["gpu"] = sorted(
        {d for r in records for d in r["device"].split(",") if not d.startswith("cpu")}
    )
    derived = derive(records)
    print()
    print(format_table(records, derived))
    print(
        f"\n{machine['cpu_model']}, {machine['cores']} cores; load average "
        f"{machine['loadavg_start'][0]:.2f} at start, {machine['loadavg_end'][0]:.2f} at end; "
        f"{machine['total_s']:.0f}s total"
    )
    if args.json:
        result = {"machine": machine, "records": records, "derived": derived, "failed": failed}
        from records import write_record

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        if write_record(args.json, result):
            return 2
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
