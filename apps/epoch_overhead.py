"""Where a `kmixvae fit` epoch's time goes: steps against everything around them.

Runs one real `fit_run` (the config as `kmixvae fit` reads it) with
`kmixvae.training.epoch_timing.EpochTiming` and the train-step trace
counter of `apps/benchmark.py`, and writes a table per epoch: its wall
time, the sum of its step times, the median step, the validation pass,
the rest (input pipeline between steps, held-out clustering, neighbour
refresh, checkpoint, other callbacks), wall / step sum, and the train-step
traces in that epoch (a trace after the first epoch is a recompile).

Run it alone on an idle machine for seconds that mean something:

```
KERAS_BACKEND=tensorflow python apps/epoch_overhead.py --out runs/overhead_tf
KERAS_BACKEND=jax python apps/epoch_overhead.py --out runs/overhead_jax
```

Defaults: `configs/film_het.json` on `../shared/data/mnist-10k`,
`test[:80%]` -> `test[80%:]`, seed 0, all its epochs; `--set` as in
`kmixvae fit`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))


def summarize(rows: list[dict]) -> dict:
    """Totals over the epochs, and over the epochs after the first (no first compile)."""

    def ratio(part):
        step = sum(r["step_s"] for r in part)
        return sum(r["wall_s"] for r in part) / step if step else float("nan")

    later = rows[1:]
    steady = [r for r in later if r["traces"] == 0]
    return {
        "epochs": len(rows),
        "wall_s": sum(r["wall_s"] for r in rows),
        "step_s": sum(r["step_s"] for r in rows),
        "wall_over_steps": ratio(rows),
        "wall_over_steps_after_epoch_1": ratio(later),
        "wall_over_steps_median_epoch": (
            statistics.median(r["wall_s"] / r["step_s"] for r in later) if later else float("nan")
        ),
        "wall_over_steps_without_recompile_epochs": ratio(steady),
        "recompiles_after_epoch_1": sum(r["traces"] for r in later),
        "recompile_epochs": [r["epoch"] for r in later if r["traces"]],
    }


def markdown(rows: list[dict], summary: dict, header: str) -> str:
    lines = [
        header,
        "",
        "| epoch | steps | wall s | step sum s | median step ms | first step s "
        "| validation s | other s | wall / steps | traces |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['epoch']} | {r['steps']} | {r['wall_s']:.2f} | {r['step_s']:.2f} "
            f"| {1000 * r['step_median_s']:.1f} | {r['first_step_s']:.2f} "
            f"| {r['validation_s']:.2f} | {r['other_s']:.2f} "
            f"| {r['wall_s'] / r['step_s']:.3f} | {r['traces']} |"
        )
    s = summary
    lines += [
        "",
        f"- whole run: wall {s['wall_s']:.1f} s, steps {s['step_s']:.1f} s, "
        f"wall / steps {s['wall_over_steps']:.3f}",
        f"- epochs 2-{s['epochs']}: wall / steps {s['wall_over_steps_after_epoch_1']:.3f} "
        f"(median epoch {s['wall_over_steps_median_epoch']:.3f}; "
        f"epochs without a recompile {s['wall_over_steps_without_recompile_epochs']:.3f})",
        f"- train-step recompiles after epoch 1: {s['recompiles_after_epoch_1']} "
        f"(epochs {s['recompile_epochs'] or 'none'})",
    ]
    if "fit_run_s" in s:
        peak = s["peak_accelerator_mb"]
        lines += [
            f"- whole `fit_run` (data, neighbour graph, model, epochs, evaluation, saving): "
            f"{s['fit_run_s']:.1f} s; peak RSS {s['peak_rss_mb']:.0f} MB; peak accelerator "
            f"memory {'-' if peak is None else f'{peak:.0f} MB'}",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/film_het.json"))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/mnist-10k"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", required=True, help="folder for epoch_overhead.json / .md")
    args = parser.parse_args(argv)

    import time

    import keras
    from benchmark import CompileCounter, peak_rss_mb
    from machine import peak_accelerator_mb

    from kmixvae import cli
    from kmixvae.training.epoch_timing import EpochTiming
    from kmixvae.training.fit import fit_run
    from kmixvae.utils.compile_cache import use_compile_cache

    overrides = [
        "data.train_split=test[:80%]",
        "data.val_split=test[80%:]",
        "output.tensorboard=false",
    ]
    given = {o.split("=", 1)[0] for o in args.overrides}
    overrides = [o for o in overrides if o.split("=", 1)[0] not in given] + args.overrides
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="epoch_overhead_"))
    overrides.append(f"output.saved_model={work / 'model.keras'}")
    from kmixvae.errors import KmixvaeError

    try:
        config = cli._load(args.config, overrides, args.data_dir)
        use_compile_cache()  # as `kmixvae fit` does (JAX; KMIXVAE_COMPILE_CACHE=off: none)
    except KmixvaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    timing = EpochTiming()
    counter = CompileCounter()

    class CountTraces(keras.callbacks.Callback):
        """Installs the trace counter on the trained model; records traces per epoch."""

        def on_train_begin(self, logs=None):
            counter.install(self.model)
            self.model.make_train_function(force=True)  # a counted function from the start
            self._seen = 0

        def on_epoch_end(self, epoch, logs=None):
            timing.epochs[-1]["traces"] = counter.traces - self._seen
            self._seen = counter.traces

    started = time.perf_counter()
    fit_run(config, run_dir=str(work / "run"), callbacks=[timing, CountTraces()], full_output=False)
    rows = timing.epochs
    summary = summarize(rows)
    summary["fit_run_s"] = time.perf_counter() - started
    summary["images_per_epoch"] = [r["steps"] * config.data.batch_size for r in rows]
    summary["peak_accelerator_mb"] = peak_accelerator_mb()
    summary["peak_rss_mb"] = peak_rss_mb()
    header = (
        f"`{keras.backend.backend()}`, `{os.path.relpath(args.config, ROOT)}` "
        f"with {' '.join('--set ' + o for o in args.overrides) or 'no --set'}, "
        f"{config.data.train_split} -> {config.data.val_split}, seed {config.seed}"
    )
    (out / "epoch_overhead.json").write_text(
        json.dumps({"backend": keras.backend.backend(), "rows": rows, "summary": summary}, indent=2)
    )
    text = markdown(rows, summary, header)
    (out / "epoch_overhead.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
