"""Trains the README's main job and ships it: saved_models/mnist_film_het.keras + its model card.

    python apps/ship_model.py                       # runs `bash scripts/main.sh`, then ships
    python apps/ship_model.py --run runs/RUN \\
        --command "kmixvae fit --config configs/film_het.json ..."   # ships a finished run

Steps: (1) without `--run`, runs `bash scripts/main.sh --run-dir runs/ship_<time>`
(the README's main command; `DATA_DIR` passes through); (2) saves the run's
model for inference (no optimizer state) to `--out`; (3) loads that file
back and evaluates it on the run's validation split exactly as
`kmixvae evaluate` does (IWAE with 100 samples); (4) writes the model card
`README.md` beside it: data and split, the exact command, the config,
versions, date and the metrics. Rerun it whenever the default config changes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = "saved_models/mnist_film_het.keras"
MAIN_COMMAND = "bash scripts/main.sh"
# evaluate's headline numbers, in the card's table (key, label, format).
HEADLINE = (
    ("accuracy", "clustering accuracy (1-to-1)", "{:.2%}"),
    ("purity", "purity (many-to-1)", "{:.4f}"),
    ("nmi", "NMI", "{:.4f}"),
    ("ari", "ARI", "{:.4f}"),
    ("specialised_count", "specialised channels", "{}"),
    ("recon_mse", "reconstruction MSE", "{:.5f}"),
    ("nelbo", "negative ELBO (nats)", "{:.3f}"),
    ("iwae_log_px", "IWAE log p(x) (nats)", "{:.3f}"),
    ("sample_consistency", "sample consistency (judge)", "{:.3f}"),
    ("recon_consistency", "recon consistency (judge)", "{:.3f}"),
    ("judge_accuracy", "judge accuracy on these images", "{:.3f}"),
)
# evaluate's bookkeeping values that the card does not list as metrics.
NOT_METRICS = {
    "num_images",
    "image_shape",
    "num_channels",
    "active_channels",
    "latent_dim",
    "channels",
    "specialised_channels",
    "garbage_channels",
    "usage_min",
    "purity_min",
    "likelihood_head",
    "likelihood_scale",
    "likelihood_units",
    "iwae_samples",
    "iwae_estimator",
    "bits_per_dim_note",
    "batch_size",
    "seed",
    "elapsed_s",
    "split",
}


def run_main_job(run_dir: Path) -> tuple[str, str]:
    """Runs the README's main command into `run_dir`; returns (command, its first line)."""
    command = f"{MAIN_COMMAND} --run-dir {run_dir}"
    print(f"ship: running {command}", flush=True)
    proc = subprocess.Popen(
        ["bash", "scripts/main.sh", "--run-dir", str(run_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = ""
    for line in proc.stdout:
        print(line, end="", flush=True)
        first = first or line.strip()
    if proc.wait() != 0:
        raise SystemExit(f"error: {command} failed (exit {proc.returncode})")
    return command, first


def _git(root: Path, *args: str) -> list[str]:
    """The output lines of `git <args>` in `root` (none when git fails)."""
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if line] if proc.returncode == 0 else []


def git_line(root: Path = ROOT, max_paths: int = 8) -> str | None:
    """The card's `git commit` entry: the commit, and what differs from it.

    Lists the tracked files changed since `HEAD` (staged or not) and the
    untracked files git does not ignore; the shipped files (`saved_models/`)
    and ignored files (run folders, caches) do not count.

    Args:
        root: the repository.
        max_paths: paths named before the rest are counted.

    Returns:
        e.g. `"e5e510c"`, `"e5e510c (uncommitted changes in: docs/x.md)"`
        or `"e5e510c (uncommitted changes in: a.py; untracked: b.py)"`;
        None outside a git repository or without git.
    """
    try:
        commit = _git(root, "rev-parse", "--short", "HEAD")
        if not commit:
            return None
        scope = ("--", ".", ":!saved_models")
        changed = _git(root, "diff", "--name-only", "HEAD", *scope)
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", *scope)
    except OSError:
        return None

    def named(paths):
        more = len(paths) - max_paths
        return ", ".join(paths[:max_paths]) + (f" and {more} more" if more > 0 else "")

    parts = []
    if changed:
        parts.append(f"uncommitted changes in: {named(changed)}")
    if untracked:
        parts.append(f"untracked: {named(untracked)}")
    return commit[0] + (f" ({'; '.join(parts)})" if parts else "")


def versions() -> dict:
    """Versions of everything that shaped the model."""
    import keras

    out = {
        "kmixvae": metadata.version("kmixvae"),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "numpy": metadata.version("numpy"),
    }
    for dist in ("tensorflow", "tensorflow-cpu", "jax", "jaxlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    line = git_line(ROOT)
    if line:
        out["git commit"] = line
    return out


def _fmt(value, fmt="{:.4g}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return fmt.format(value)
    return str(value)


def metric_rows(metrics: dict) -> list[str]:
    """Markdown rows: the headline numbers, then every other number evaluate reported."""
    rows = [f"| {label} | {_fmt(metrics.get(key), fmt)} |" for key, label, fmt in HEADLINE]
    shown = {key for key, _, _ in HEADLINE}
    for key, value in metrics.items():
        if key in shown or key in NOT_METRICS:
            continue
        if isinstance(value, (int, float)) or value is None:
            rows.append(f"| {key} | {_fmt(value)} |")
        elif isinstance(value, dict):  # e.g. a section of generation metrics
            for sub, v in value.items():
                if isinstance(v, (int, float)):
                    rows.append(f"| {key}.{sub} | {_fmt(v)} |")
    return rows


def model_card(
    *,
    out: Path,
    run_dir: Path,
    command: str,
    first_line: str,
    config: dict,
    metrics: dict,
    run_metrics: dict,
    report: str,
    size: int,
    split_sizes: tuple[int, int],
) -> str:
    """The model card (markdown)."""
    data = config["data"]
    where = f"`{data['source']}` files in `{data['dir']}`" if data.get("dir") else "TFDS"
    final = run_metrics.get("final", {})
    train_seconds = final.get("train_seconds")
    lines = [
        f"# {out.name}",
        "",
        f"A kmixvae mixture-of-VAEs ({config['model']['num_channels']} channels with "
        f"{config['model']['latent']['dim']}-d latents, {config['model']['decoder']['conditioning']} "
        f"decoder, {config['model']['decoder']['head']} head) trained without labels on MNIST "
        f"by the README's main command with `configs/film_het.json`. Saved for inference "
        f"(weights and config, no optimizer state): {size / 1e6:.1f} MB. It loads on "
        "TensorFlow and JAX.",
        "",
        "    kmixvae sample saved_models/mnist_film_het.keras --channel 3 --n 16 --out three.png",
        "    kmixvae evaluate saved_models/mnist_film_het.keras --data-dir DIR --split 'test[80%:]'",
        "",
        "## Data and split",
        "",
        f"- data: MNIST `{data['name']}` from {where}",
        f"- training: `{data['train_split']}` ({split_sizes[0]:,} images; labels never read)",
        f"- validation: `{data['val_split']}` ({split_sizes[1]:,} images; the metrics below)",
        "",
        "## How it was made",
        "",
        f"- command: `{command}`",
    ]
    if first_line:
        lines.append(f"- its first line: `{first_line}`")
    lines += [
        f"- shipped with: `python apps/ship_model.py` from the run folder `{run_dir}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- training: {run_metrics.get('epochs', '-')} epochs"
        + (f", {train_seconds:.0f} s" if isinstance(train_seconds, float) else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "",
        "## Metrics (`kmixvae evaluate`, on the validation split)",
        "",
        "| metric | value |",
        "|---|---|",
        *metric_rows(metrics),
        "",
        "What `kmixvae evaluate` printed:",
        "",
        "```",
        report,
        "```",
        "",
        "## Config (resolved)",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="ship this finished run folder instead of training one")
    parser.add_argument(
        "--command", help="with --run: the exact command that trained it (for the card)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"model file (default {DEFAULT_OUT})")
    parser.add_argument("--iwae-samples", type=int, default=100)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    out = Path(args.out)
    if out.suffix != ".keras":
        print(f"error: --out {str(out)!r}: must end with .keras", file=sys.stderr)
        return 2
    if args.run:
        if not args.command:
            print("error: --run needs --command (the command that trained it)", file=sys.stderr)
            return 2
        run_dir, command, first = Path(args.run), args.command, ""
    else:
        run_dir = Path("runs") / f"ship_{time.strftime('%Y%m%d_%H%M%S')}"
        command, first = run_main_job(run_dir)

    from kmixvae import config as config_lib
    from kmixvae.data import load_split
    from kmixvae.errors import KmixvaeError
    from kmixvae.evaluation.evaluate import evaluate_model, format_report
    from kmixvae.evaluation.generation import default_judge_cache_dir, load_or_train_judge
    from kmixvae.runs import describe_training_data, load_model_file, save_for_inference
    from kmixvae.utils.files import atomic_write_text

    try:
        cfg = config_lib.load_config(run_dir / "config.json")
        model = load_model_file(run_dir)
        save_for_inference(model, out, training_data=describe_training_data(cfg.data))
        shipped = load_model_file(out)
        images, labels = load_split(cfg.data, cfg.data.val_split)
        train_images, train_labels = load_split(cfg.data, cfg.data.train_split)
        train_count = len(train_labels)
    except KmixvaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # The generation metrics' judge learns from the training split's labels (as `evaluate`'s).
    judge = load_or_train_judge(
        train_images,
        train_labels,
        seed=0,
        source=cfg.data.train_split,
        cache_dir=default_judge_cache_dir(),
    )
    metrics = evaluate_model(shipped, images, labels, iwae_samples=args.iwae_samples, judge=judge)
    metrics["split"] = cfg.data.val_split
    report = format_report(metrics)
    print(report)
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    card = model_card(
        out=out,
        run_dir=run_dir,
        command=command,
        first_line=first,
        config=config_lib.to_dict(cfg),
        metrics=metrics,
        run_metrics=run_metrics,
        report=report,
        size=out.stat().st_size,
        split_sizes=(train_count, len(labels)),
    )
    card_path = out.parent / "README.md"
    atomic_write_text(card_path, card)
    print(f"ship: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
