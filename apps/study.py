"""Run a grid of configs x seeds as normal `kmixvae fit` runs, evaluate, and write a report.

Usage:

    python apps/study.py --grid apps/grids/film_vs_concat.json [--only VARIANT ...]
                         [--seeds SEED ...] [--report-only]

The grid file (JSON):

    {
      "name": "film_vs_concat",
      "data_dir": "../shared/data/mnist-10k",
      "train_split": "test[:80%]",
      "eval_split": "test[80%:]",
      "seeds": [0, 1, 2],
      "iwae_samples": 100,
      "prepare": ["python", "apps/synthetic_mixture.py", "--clusters", "5", "--out", "DIR"],
      "variants": {
        "concat_baseline": {"config": "configs/concat_het.json", "set": ["training.epochs=20"]},
        "film": {"config": "configs/film_het.json", "set": ["curriculum.enabled=false"]}
      }
    }

`prepare` (optional) is the command that makes `data_dir` when it is missing
(generated data). Each (variant, seed) is a run folder `study_runs/<name>/<variant>__seed<seed>/`
made by `kmixvae fit` in a subprocess (log: `<run>.log` beside it) and then
`kmixvae evaluate` on the held-out split. A killed study continues where it
stopped: finished runs are skipped, a run with a completed epoch is resumed
(`fit --resume`), anything else is started again. Several study processes
may share a grid (e.g. one per `--seeds`): a run being made by a live
process is locked (`<run>.lock`) and skipped by the others. The report goes to
`docs/study_<name>.md` with its figures in `docs/study_<name>/`.

The run folders (models, checkpoints) stay out of git, so each finished run
is also kept as a small record, `docs/study_<name>/runs/<variant>__seed<seed>.json`
(its evaluation, history and resolved config): committed with the report, it
keeps the run in the report when the study later gains seeds or variants on
another checkout that lacks the run's folder. A run folder, where present,
wins over its record.

Every finished run is also a trial of a TensorBoard HParams experiment in
`study_runs/<name>/hparams/` (`write_hparams`): its hyperparameters are its
variant, its seed and every resolved config value that differs between the
grid's runs; its metrics are the report table's final figures. `tensorboard
--logdir study_runs/<name>` opens them in the HParams tab (table, parallel
coordinates, scatter plots) beside each run's own training curves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KMIXVAE = [sys.executable, "-m", "kmixvae.cli"]
THRESHOLDS = (0.70, 0.725, 0.90)
TABLE = (
    ("accuracy", "clustering acc", 100.0, "{:.1f}"),
    ("nmi", "NMI", 1.0, "{:.3f}"),
    ("specialised_count", "specialised", 1.0, "{:.1f}"),
    ("kept_channels", "channels kept", 1.0, "{:.1f}"),
    ("nelbo", "-ELBO (nats)", 1.0, "{:.1f}"),
    ("iwae_log_px", "IWAE log p(x) (nats)", 1.0, "{:.1f}"),
    ("recon_mse", "recon MSE", 1.0, "{:.4f}"),
    ("sample_consistency", "sample consistency", 1.0, "{:.3f}"),
    ("recon_consistency", "recon consistency", 1.0, "{:.3f}"),
    ("judge_accuracy", "judge acc", 1.0, "{:.3f}"),
    ("train_seconds", "train s", 1.0, "{:.0f}"),
)


def run_dir_of(grid: dict, variant: str, seed: int) -> Path:
    return ROOT / "study_runs" / grid["name"] / f"{variant}__seed{seed}"


def _run(cmd, log_path: Path) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("\n$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {proc.returncode}), see {log_path}: {' '.join(cmd)}"
        )


def _claim(lock: Path) -> bool:
    """Takes `lock` for this process unless a live process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text().strip() or "0"), 0)
            return False  # held by a live process
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)  # stale: its process is gone
            return _claim(lock)
        except PermissionError:
            return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def run_one(grid: dict, variant: str, seed: int) -> Path | None:
    """Fits (or resumes) and evaluates one run; skips what is done or running elsewhere."""
    run_dir = run_dir_of(grid, variant, seed)
    if (run_dir / "eval_metrics.json").is_file():
        print(f"[study] done already: {run_dir.name}")
        return run_dir
    lock = run_dir.parent / f"{run_dir.name}.lock"
    if not _claim(lock):
        print(f"[study] running in another process: {run_dir.name}")
        return None
    try:
        return _fit_and_evaluate(grid, variant, seed, run_dir)
    finally:
        lock.unlink(missing_ok=True)


def _fit_and_evaluate(grid: dict, variant: str, seed: int, run_dir: Path) -> Path:
    spec = grid["variants"][variant]
    log = run_dir.parent / f"{run_dir.name}.log"
    if not (run_dir / "model.keras").is_file():
        if (run_dir / "checkpoints" / "last.json").is_file():
            print(f"[study] resuming {run_dir.name}")
            _run(KMIXVAE + ["fit", "--resume", str(run_dir), "--data-dir", grid["data_dir"]], log)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            print(f"[study] fitting {run_dir.name}")
            sets = [
                f"seed={seed}",
                f"name={grid['name']}_{variant}_s{seed}",
                f"data.train_split={grid['train_split']}",
                f"data.val_split={grid['eval_split']}",
                f"output.saved_model={run_dir / 'saved.keras'}",
                "output.projector=false",
                *spec.get("set", []),
            ]
            cmd = KMIXVAE + [
                "fit",
                "--config",
                spec["config"],
                "--data-dir",
                grid["data_dir"],
                "--run-dir",
                str(run_dir),
            ]
            for s in sets:
                cmd += ["--set", s]
            _run(cmd, log)
    print(f"[study] evaluating {run_dir.name}")
    _run(
        KMIXVAE
        + [
            "evaluate",
            str(run_dir),
            "--data-dir",
            grid["data_dir"],
            "--split",
            grid["eval_split"],
            "--iwae-samples",
            str(grid.get("iwae_samples", 100)),
        ],
        log,
    )
    return run_dir


def _history(run_dir: Path) -> list[dict]:
    from kmixvae.runs import read_history_csv

    return read_history_csv(run_dir / "history.csv")


def time_to(rows: list[dict], threshold: float):
    for r in rows:
        if r.get("val_cluster_acc", 0.0) >= threshold:
            return r.get("train_seconds")
    return None


def record_path(grid: dict, variant: str, seed: int) -> Path:
    """The committed record of a finished run: `docs/study_<name>/runs/<variant>__seed<seed>.json`."""
    return ROOT / "docs" / f"study_{grid['name']}" / "runs" / f"{variant}__seed{seed}.json"


def _from_run_folder(rd: Path, seed: int) -> dict:
    """A finished run's record, read from its folder (evaluation, history, config, times)."""
    return {
        "seed": seed,
        "run_dir": str(rd.relative_to(ROOT)),
        "evaluation": json.loads((rd / "eval_metrics.json").read_text()),
        "history": _history(rd),
        "config": json.loads((rd / "config.json").read_text()),
        "started": (rd / "config.json").stat().st_mtime,
        "finished": (rd / "eval_metrics.json").stat().st_mtime,
    }


def collect(grid: dict) -> dict:
    """Every finished run of the grid, from its folder or else from its committed record.

    A run read from its folder (re)writes its record, so the report can be
    rebuilt on a checkout without the folder.

    Returns:
        {variant: [run, ...]}: a run is its evaluation's figures plus `seed`,
        `run_dir`, `history`, `config`, `started`, `finished`, `train_seconds`,
        `kept_channels`, `time_to_<threshold>` and `from_record` (True when
        its folder was not here).
    """
    from kmixvae.utils.files import atomic_write_text

    results = {}
    for variant in grid["variants"]:
        runs = []
        for seed in grid["seeds"]:
            rd = run_dir_of(grid, variant, seed)
            record_file = record_path(grid, variant, seed)
            if (rd / "eval_metrics.json").is_file():
                record = _from_run_folder(rd, seed)
                record_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(record_file, json.dumps(record, indent=1, sort_keys=True) + "\n")
                from_record = False
            elif record_file.is_file():
                record = json.loads(record_file.read_text())
                from_record = True
            else:
                continue
            rows = record["history"]
            ev = dict(record["evaluation"])
            ev["train_seconds"] = rows[-1].get("train_seconds") if rows else None
            ev["kept_channels"] = len(ev.get("active_channels") or [])
            for t in THRESHOLDS:
                ev[f"time_to_{t}"] = time_to(rows, t)
            ev.update(
                seed=seed,
                run_dir=record["run_dir"],
                history=rows,
                config=record["config"],
                started=record["started"],
                finished=record["finished"],
                from_record=from_record,
            )
            runs.append(ev)
        results[variant] = runs
    return results


def _mean_std(values):
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def _figures(grid: dict, results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.cm.tab10.colors
    for i, (variant, runs) in enumerate(results.items()):
        for j, r in enumerate(runs):
            xs = [h.get("train_seconds") for h in r["history"]]
            ys = [100 * h.get("val_cluster_acc", np.nan) for h in r["history"]]
            ax.plot(xs, ys, color=colors[i % 10], alpha=0.8, label=variant if j == 0 else None)
    for t in THRESHOLDS:
        ax.axhline(100 * t, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("training wall seconds (this machine)")
    ax.set_ylabel("held-out clustering accuracy (%)")
    ax.set_title(f"{grid['name']}: accuracy vs training time, one line per seed")
    ax.legend(fontsize=8)
    p = out / "accuracy_vs_time.png"
    fig.savefig(p, dpi=100, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)
    return paths


KEY_FIGURES = (
    "core/model_reconstructions.png",
    "mixture/channel_samples.png",
    "mixture/channel_usage.png",
)


def _variant_figures(grid: dict, results: dict, out: Path) -> dict[str, list[Path]]:
    """`kmixvae visualize` of each variant's first finished seed on the held-out split."""
    figures = {}
    for variant, runs in results.items():
        if not runs:
            continue
        folder = out / variant
        live = [r for r in runs if not r.get("from_record")]
        if not all((folder / f).is_file() for f in KEY_FIGURES) and live:
            # Every figure goes to the run folder; the report keeps the key ones.
            drawn = ROOT / live[0]["run_dir"] / "figures"
            cmd = KMIXVAE + [
                "visualize",
                str(ROOT / live[0]["run_dir"]),
                "--data-dir",
                grid["data_dir"],
                "--split",
                grid["eval_split"],
                "--out",
                str(drawn),
                "--max-points",
                "2000",
            ]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"[study] figures of {variant} failed: {proc.stderr.strip()[-300:]}")
                continue
            for f in KEY_FIGURES:
                (folder / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(drawn / f, folder / f)
        figures[variant] = [folder / f for f in KEY_FIGURES if (folder / f).is_file()]
    return figures


def _channel_shares(run: dict) -> str:
    """`channel:share(label)` of each active channel's prior draws the judge names as its label."""
    gen = run.get("generation")
    if not gen:
        return "-"
    return " ".join(
        f"{ch['channel']}:{ch['sample_consistency']:.2f}"
        + ("" if ch["matched_label"] is None else f"({ch['matched_label']})")
        for ch in gen["channels"]
        if ch["active"]
    )


def write_report(grid: dict, results: dict, command: str) -> Path:
    name = grid["name"]
    doc = ROOT / "docs" / f"study_{name}.md"
    fig_dir = ROOT / "docs" / f"study_{name}"
    figs = _figures(grid, results, fig_dir)
    per_variant = _variant_figures(grid, results, fig_dir)
    lines = [
        f"# Study: {name}",
        "",
        f"Data: `{grid['data_dir']}` "
        + (f"(made by `{' '.join(grid['prepare'])}`)" if grid.get("prepare") else "(real images)")
        + f", trained on `{grid['train_split']}`, "
        f"evaluated on `{grid['eval_split']}`; seeds {grid['seeds']}. Labels are used only for evaluation.",
        "",
        *([grid["note"], ""] if grid.get("note") else []),
        "Reproduce:",
        "",
        f"    {command}",
        "",
        "Mean +- std over seeds (n = seeds finished). Likelihoods are continuous Gaussian densities for "
        "the heteroscedastic head (nats, can be negative) and discrete for the Bernoulli head: compare them "
        "only within a head.",
        "",
        "Sample consistency: of 200 draws from each active channel's prior, the share that a "
        "classifier (the judge: an MLP trained on the labels of the training split, which train no "
        "model) names as the label matched to that channel by the one-to-one matching of the "
        "clustering accuracy; an active channel with no matched label scores 0. Recon consistency: "
        "the share of reconstructions it names as the original's label. Judge acc: the judge on the "
        "real held-out images (the ceiling of both).",
        "",
    ]
    head = (
        "| variant | n | "
        + " | ".join(label for _, label, _, _ in TABLE)
        + " | "
        + " | ".join(f"s to {100 * t:g}%" for t in THRESHOLDS)
        + " |"
    )
    lines += [head, "|" + "---|" * (len(TABLE) + 2 + len(THRESHOLDS))]
    for variant, runs in results.items():
        cells = []
        for key, _, scale, fmt in TABLE:
            m, s, n = _mean_std([r.get(key) for r in runs])
            cells.append(
                "-" if m is None else f"{fmt.format(m * scale)} +- {fmt.format(s * scale)}"
            )
        for t in THRESHOLDS:
            times = [r.get(f"time_to_{t}") for r in runs]
            reached = [x for x in times if x is not None]
            cells.append(
                f"{np.mean(reached):.0f} ({len(reached)}/{len(runs)})"
                if reached
                else f"never (0/{len(runs)})"
            )
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per run (a run marked *record* was read from its committed record in "
        f"`docs/study_{name}/runs/`: its folder is not on this checkout):",
        "",
        "| run | acc % | specialised | garbage channels | active channels at the end | -ELBO | "
        "recon MSE | sample consistency per channel | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runs in results.values():
        for r in runs:
            active = r["history"][-1].get("active_channels") if r["history"] else None
            seconds = r.get("train_seconds")
            mark = " *record*" if r.get("from_record") else ""
            lines.append(
                f"| `{r['run_dir']}`{mark} | {100 * r.get('accuracy', float('nan')):.1f} | "
                f"{r.get('specialised_count')} | {r.get('garbage_channels')} | "
                f"{'-' if active is None else int(active)} | {r.get('nelbo', float('nan')):.1f} | "
                f"{r.get('recon_mse', float('nan')):.4f} | {_channel_shares(r)} | "
                f"{'-' if seconds is None else f'{seconds:.0f}'} |"
            )
    lines += ["", "Variants:", ""]
    for variant, spec in grid["variants"].items():
        lines.append(f"- `{variant}`: `{spec['config']}` with {spec.get('set', [])}")
    lines += ["", "Figures:", ""]
    for p in figs:
        lines.append(f"![{p.stem}]({p.relative_to(doc.parent)})")
    for variant, paths in per_variant.items():
        lines += ["", f"`{variant}` (one seed; held-out images):", ""]
        for p in paths:
            lines.append(f"![{variant} {p.stem}]({p.relative_to(doc.parent)})")
    doc.parent.mkdir(parents=True, exist_ok=True)
    from kmixvae.utils.files import atomic_write_text

    atomic_write_text(doc, "\n".join(lines) + "\n")
    return doc


# Config keys that name or place a run rather than shape it: not hyperparameters of a trial.
NOT_HPARAMS = ("name", "seed", "output.")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def hparams_dir(grid: dict) -> Path:
    return ROOT / "study_runs" / grid["name"] / "hparams"


def write_hparams(grid: dict, results: dict) -> Path:
    """Writes every finished run as a TensorBoard HParams trial in `study_runs/<name>/hparams/`.

    A trial's hyperparameters: `variant`, `seed` and each resolved config
    value (`<run>/config.json`, flattened to dotted keys) that differs between
    the grid's finished runs, names and output paths left out. Its metrics:
    the report table's figures (`TABLE`), as evaluate and the history give them.

    Returns:
        The log folder.
    """
    from kmixvae.viz.tensorboard_hparams import Trial, write_hparams_trials

    runs = [(variant, r) for variant, rs in results.items() for r in rs]
    configs = [_flat(r["config"]) for _, r in runs]
    keys = sorted(set().union(*configs)) if configs else []
    differing = [
        k
        for k in keys
        if not k.startswith(NOT_HPARAMS) and len({json.dumps(c.get(k)) for c in configs}) > 1
    ]
    trials = []
    for (variant, r), config in zip(runs, configs):
        hparams = {"variant": variant, "seed": r["seed"]}
        hparams.update({k: config.get(k) for k in differing})
        trials.append(
            Trial(
                name=Path(r["run_dir"]).name,  # the folder itself may be gone (a record)
                hparams=hparams,
                metrics={f"eval/{key}": r.get(key) for key, _, _, _ in TABLE},
                start_time=r["started"],
                end_time=r["finished"],
            )
        )
    metrics = {f"eval/{key}": label for key, label, _, _ in TABLE}
    log_dir = hparams_dir(grid)
    write_hparams_trials(log_dir, trials, metrics)
    return log_dir


def prepare_data(grid: dict) -> bool:
    """Runs the grid's `prepare` command when its `data_dir` is missing; False if it failed.

    A grid on generated data (e.g. `apps/synthetic_mixture.py`) says how to make
    it; `python` in the command is this interpreter.
    """
    if not grid.get("prepare") or (ROOT / grid["data_dir"]).exists():
        return True
    prepare = [sys.executable if a == "python" else a for a in grid["prepare"]]
    print(f"[study] {grid['data_dir']} missing: {' '.join(grid['prepare'])}")
    if subprocess.run(prepare, cwd=ROOT).returncode != 0:
        print(f"error: grid 'prepare' command failed: {' '.join(grid['prepare'])}", file=sys.stderr)
        return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", required=True, help="grid JSON file")
    parser.add_argument("--only", nargs="*", help="variants to run (default all)")
    parser.add_argument(
        "--seeds", nargs="*", type=int, help="seeds to run (default the grid's; for parallel jobs)"
    )
    parser.add_argument("--report-only", action="store_true", help="only (re)write the report")
    args = parser.parse_args(argv)
    grid_path = Path(args.grid)
    if not grid_path.is_file():
        print(f"error: grid file {str(grid_path)!r} does not exist", file=sys.stderr)
        return 2
    try:
        grid = json.loads(grid_path.read_text())
    except json.JSONDecodeError as e:
        print(f"error: grid file {str(grid_path)!r} is not valid JSON: {e}", file=sys.stderr)
        return 2
    missing = [
        k
        for k in ("name", "data_dir", "train_split", "eval_split", "seeds", "variants")
        if k not in grid
    ]
    if missing:
        print(f"error: grid file {str(grid_path)!r} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    unknown = [v for v in (args.only or []) if v not in grid["variants"]]
    if unknown:
        print(f"error: --only {unknown[0]!r} is not a variant of the grid", file=sys.stderr)
        return 2
    unknown = [s for s in (args.seeds or []) if s not in grid["seeds"]]
    if unknown:
        print(f"error: --seeds {unknown[0]} is not a seed of the grid", file=sys.stderr)
        return 2
    if not args.report_only and not prepare_data(grid):
        return 2
    if not args.report_only:
        # Seed-major order: every variant gets its first seed before any gets a second.
        for seed in args.seeds or grid["seeds"]:
            for variant in args.only or grid["variants"]:
                run_one(grid, variant, seed)
    command = f"python apps/study.py --grid {args.grid}"
    results = collect(grid)
    doc = write_report(grid, results, command)
    print(f"[study] report: {doc}")
    log_dir = write_hparams(grid, results)
    print(
        f"[study] TensorBoard HParams: {log_dir} "
        f"(tensorboard --logdir {log_dir.parent.relative_to(ROOT)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
