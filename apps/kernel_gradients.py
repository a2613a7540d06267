"""What each layer's kernel gradient costs in the training step, on the current backend.

Builds the config's model once as it trains and once per named layer with
that layer frozen (`trainable=False`: no gradient for its kernel and bias,
no optimizer update of them; every other gradient, the input gradient
through the layer included, is still computed), then times `model.fit`
epochs of synthetic images on the pipeline `apps/benchmark.py` times (the
config's `data.neighbors` pairs, `data.pipeline`). The models' epochs are
interleaved, one epoch of each in turn after one untimed round that warms
every model, so that a slow minute on a shared machine hits all of them. A
layer's cost is the step with every kernel trained minus the step with that
layer frozen (medians over the repeats).

It answers "which gradient makes backend A slower than backend B": run it
on both backends of the same idle machine and compare the columns.

```
KERAS_BACKEND=jax python apps/kernel_gradients.py --json /tmp/kernel_gradients_jax.json
KERAS_BACKEND=tensorflow python apps/kernel_gradients.py --json /tmp/kernel_gradients_tf.json
```

Defaults: `configs/film_het.json`, every `Conv2D` of the model, batches of
128, 12 steps an epoch, 5 timed epochs a model. `--layers` takes layer
paths or their endings (`encoder/conv_1`, `head/projection`), comma-separated.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))


def layer_paths(model, kinds=("Conv2D",)) -> list[str]:
    """Paths of the model's layers of the given class names that own weights."""
    from kmixvae.utils.keras_adapter import sublayers

    return [
        layer.path for layer in sublayers(model) if type(layer).__name__ in kinds and layer.weights
    ]


def find_layer(model, name: str):
    """The one layer whose path is `name` or ends in `/name`; `ValueError` otherwise."""
    from kmixvae.utils.keras_adapter import sublayers

    found = [
        layer
        for layer in sublayers(model)
        if layer.path and (layer.path == name or layer.path.endswith("/" + name)) and layer.weights
    ]
    if len(found) != 1:
        known = ", ".join(layer_paths(model, ("Conv2D", "Dense")))
        what = "no layer with weights" if not found else f"{len(found)} layers"
        raise ValueError(f"--layers: {name!r} matches {what} (layers: {known})")
    return found[0]


def count_params(variables) -> int:
    return sum(math.prod(v.shape) for v in variables)


def fresh_model(config, frozen: str | None = None):
    """The config's model from its seed, with the layer `frozen` (a path) frozen."""
    import keras

    from kmixvae.models.factory import build_model

    keras.utils.set_random_seed(config.seed)
    model = build_model(config, (28, 28, 1))
    if frozen is not None:
        find_layer(model, frozen).trainable = False
    return model


def compile_and_warm(model, config, dataset, warmup_steps: int):
    """`model` compiled with Adam and trained `warmup_steps` steps (its compile)."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(config.training.learning_rate))
    model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps, shuffle=False, verbose=0)
    return model


def time_epochs(models: dict, dataset, steps: int, repeats: int, warmup_rounds: int = 1) -> dict:
    """ms a step of each model's epochs, one epoch of each model in turn, `repeats` rounds
    after `warmup_rounds` untimed ones (on TensorFlow a model's first epoch after other
    models were built ran ~3x slower: every model is warm before the timed rounds)."""
    from benchmark import wait_for

    times = {name: [] for name in models}
    for round_ in range(warmup_rounds + repeats):
        for name, model in models.items():
            start = time.perf_counter()
            history = model.fit(dataset, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
            wait_for({k: v[-1] for k, v in history.history.items()})
            if round_ >= warmup_rounds:
                times[name].append(1000.0 * (time.perf_counter() - start) / steps)
    return times


def summarize(times: dict, params: dict, batch_size: int) -> list[dict]:
    """One row a model: its median ms a step; for a frozen layer, what its gradient costs."""
    full = statistics.median(times["all trained"])
    rows = []
    for name, values in times.items():
        ms = statistics.median(values)
        rows.append(
            {
                "frozen": None if name == "all trained" else name,
                "trainable_params": params[name],
                "ms_per_step": ms,
                "ms_per_step_each_epoch": values,
                "images_per_s": 1000.0 * batch_size / ms,
                "gradient_ms": None if name == "all trained" else full - ms,
                "gradient_share": None if name == "all trained" else (full - ms) / full,
            }
        )
    return rows


def markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| frozen layer | trainable parameters | ms a step | its gradient, ms | share of the step |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["frozen"] is None:
            lines.append(
                f"| (none: every kernel trained) | {r['trainable_params']:,} "
                f"| {r['ms_per_step']:.1f} | | |"
            )
        else:
            lines.append(
                f"| `{r['frozen']}` | {r['trainable_params']:,} | {r['ms_per_step']:.1f} "
                f"| {r['gradient_ms']:.1f} | {100 * r['gradient_share']:.0f}% |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/film_het.json"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--layers", default="", help="comma-separated; default every Conv2D")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--warmup-rounds", type=int, default=1, help="untimed epochs a model first")
    parser.add_argument("--json", default=None, help="write the rows and machine facts here")
    args = parser.parse_args(argv)
    for flag in ("batch_size", "images", "steps", "repeats", "warmup_steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.warmup_rounds < 0:
        parser.error("--warmup-rounds must be at least 0")
    if args.images < args.batch_size:
        parser.error("--images must be at least --batch-size (whole batches only)")

    import keras
    from benchmark import machine_info, make_dataset, synthetic_images
    from records import json_folder_error, write_record

    from kmixvae.config import load_config
    from kmixvae.errors import KmixvaeError

    try:
        config = load_config(args.config, args.overrides)
    except KmixvaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if json_folder_error(args.json):
        return 2
    full = fresh_model(config)  # the layer names are checked on it, before any training
    try:
        names = [n.strip() for n in args.layers.split(",") if n.strip()] or layer_paths(full)
        paths = [find_layer(full, n).path for n in names]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    images = synthetic_images(args.images)
    dataset = make_dataset(images, args.batch_size, config.data.neighbors, config.data.pipeline)
    models = {"all trained": compile_and_warm(full, config, dataset, args.warmup_steps)}
    for path in paths:
        models[path] = compile_and_warm(
            fresh_model(config, path), config, dataset, args.warmup_steps
        )
    params = {name: count_params(m.trainable_variables) for name, m in models.items()}
    times = time_epochs(models, dataset, args.steps, args.repeats, args.warmup_rounds)
    rows = summarize(times, params, args.batch_size)
    header = (
        f"`{keras.backend.backend()}`, `{Path(args.config).name}`, batches of "
        f"{args.batch_size}, {args.steps} steps an epoch, median of {args.repeats} epochs a model"
    )
    print(markdown(rows, header))
    if args.json:
        record = {
            "backend": keras.backend.backend(),
            "config": args.config,
            "overrides": args.overrides,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup_rounds": args.warmup_rounds,
            "machine": machine_info(),
            "rows": rows,
        }
        return write_record(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
