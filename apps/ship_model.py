"""Trains a preset's job and ships it as package data: kmixvae/presets/<preset>.keras + its card.

    python apps/ship_model.py                       # mnist_film_het: `bash scripts/main.sh`
    python apps/ship_model.py --preset fashion_mnist_film_het   # Fashion-MNIST, train[:8000]
    python apps/ship_model.py --run runs/RUN \\
        --command "kmixvae fit --config configs/film_het.json ..."   # ships a finished run

Presets (`PRESETS`): `mnist_film_het` is the README's main job
(`bash scripts/main.sh`, `DATA_DIR` passes through); `fashion_mnist_film_het`
is `configs/film_het.json` on Fashion-MNIST IDX files (`DATA_DIR`, default
`../shared/data/fashion-mnist-train`), trained on `train[:8000]` and judged
on `train[50000:52000]`.

Steps: (1) without `--run`, runs the preset's command with
`--run-dir runs/ship_<preset>_<time>`; (2) saves the run's model for inference
(no optimizer state) to `--out` (default `kmixvae/presets/<preset>.keras`,
package data: `kmixvae presets` lists it and every command takes its name);
(3) loads that file back and evaluates it on the run's validation split
exactly as `kmixvae evaluate` does (IWAE with 100 samples); (4) writes the
model card `<preset>.md` beside it: data and split, the exact command, the
config, versions, date, the metrics (each figure once, grouped by kind as on
the report page: `kmixvae/viz/key_metrics.py`) and what each channel holds;
(5) writes the preset's entry (file, card, one-line description with the
measured accuracy) in `presets.json` beside it. Rerun it whenever the
default config changes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS_DIR = "kmixvae/presets"
MAIN_COMMAND = "bash scripts/main.sh"
FASHION_DIR = "../shared/data/fashion-mnist-train"
# What each preset trains: its dataset's name (for the card) and its command (argv, run in ROOT).
PRESETS = {
    "mnist_film_het": {"dataset": "MNIST", "argv": ["bash", "scripts/main.sh"]},
    "fashion_mnist_film_het": {
        "dataset": "Fashion-MNIST",
        "argv": [
            "kmixvae",
            "fit",
            "--config",
            "configs/film_het.json",
            "--data-dir",
            "$DATA_DIR",
            "--set",
            "data.name=fashion_mnist",
            "--set",
            "data.train_split=train[:8000]",
            "--set",
            "data.val_split=train[50000:52000]",
        ],
    },
}
DEFAULT_PRESET = "mnist_film_het"
# The kinds of figures the card's table shows; the training time is in "How it was made".
CARD_KINDS = ("clustering", "likelihood", "generation")
# evaluate's bookkeeping values and settings that the card does not list as metrics.
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
    "generation.n_per_channel",
    "generation.seed",
    "generation.elapsed_s",
}


def train_argv(preset: str, run_dir: Path) -> list[str]:
    """The command that trains `preset` into `run_dir` (`$DATA_DIR` filled in, `kmixvae` this
    interpreter's CLI)."""
    argv = [*PRESETS[preset]["argv"], "--run-dir", str(run_dir)]
    data_dir = os.environ.get("DATA_DIR") or FASHION_DIR
    argv = [data_dir if a == "$DATA_DIR" else a for a in argv]
    if argv[0] == "kmixvae":
        argv = [sys.executable, "-m", "kmixvae.cli", *argv[1:]]
    return argv


def run_main_job(run_dir: Path, preset: str = DEFAULT_PRESET) -> tuple[str, str]:
    """Runs `preset`'s training command into `run_dir`; returns (command, its first line)."""
    argv = train_argv(preset, run_dir)
    shown = ["kmixvae", *argv[3:]] if argv[0] == sys.executable else argv
    command = " ".join(shlex.quote(a) for a in shown)
    print(f"ship: running {command}", flush=True)
    proc = subprocess.Popen(
        argv,
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
    untracked files git does not ignore; the shipped files (`kmixvae/presets/`,
    `saved_models/`) and ignored files (run folders, caches) do not count.

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
        scope = ("--", ".", ":!saved_models", f":!{PRESETS_DIR}")
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


def metric_rows(metrics: dict) -> list[str]:
    """Markdown rows `| kind | metric | value |`: each figure evaluate reported, once.

    The key figures (`key_metrics.KEY_METRICS`: clustering, likelihood,
    generation) come first under their readable names; any other number
    evaluate reported follows under its key, unless a key figure already
    shows it (e.g. `generation.judge_accuracy` is `judge_accuracy`).
    """
    from kmixvae.viz.key_metrics import format_value, key_metric_rows, other_numbers

    rows = [
        f"| {r.kind} | {r.label} | {r.text} |"
        for r in key_metric_rows([("evaluate", metrics)], kinds=CARD_KINDS)
    ]
    rows += [
        f"| other | {key} | {format_value(value)} |"
        for key, value in other_numbers(metrics, skip=NOT_METRICS, kinds=CARD_KINDS)
    ]
    return rows


def channel_rows(metrics: dict) -> list[str]:
    """Markdown rows of evaluate's per-channel report: what each channel holds."""
    from kmixvae.viz.key_metrics import format_value

    rows = []
    for ch in metrics.get("channels", []):
        status = "specialised" if ch["specialised"] else "garbage" if ch["active"] else "masked"
        cells = [
            str(ch["channel"]),
            status,
            str(ch["count"]),
            format_value(ch["usage"], "{:.1%}"),
            format_value(ch["purity"], "{:.3f}"),
            format_value(ch.get("majority_label"), "{}"),
            format_value(ch.get("matched_label"), "{}"),
            format_value(ch.get("sample_consistency"), "{:.3f}"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def judge_line(metrics: dict) -> str | None:
    """One sentence on the judge that scores the generation figures, or None without one."""
    gen = metrics.get("generation") or {}
    judge = gen.get("judge")
    if not judge:
        return None
    return (
        f"Generation figures: a judge, {judge['kind']}, trained on `{judge['source']}` "
        f"({judge['train_images']:,} labelled images) names {gen['n_per_channel']} prior "
        "draws per active channel (sample consistency: the share named as the channel's "
        "matched label) and each reconstruction (recon consistency)."
    )


def model_card(
    *,
    out: Path,
    run_dir: Path,
    command: str,
    first_line: str,
    config: dict,
    metrics: dict,
    run_metrics: dict,
    size: int,
    split_sizes: tuple[int, int],
    date: str | None = None,
    made_with: dict | None = None,
    dataset: str = "MNIST",
) -> str:
    """The model card (markdown).

    Args:
        out: the shipped model file.
        run_dir: the run folder it came from.
        command: the command that trained it.
        first_line: that command's first output line (or "").
        config: the run's resolved config.
        metrics: `evaluate_model`'s result on the validation split.
        run_metrics: the run's `metrics.json`.
        size: the model file's size in bytes.
        split_sizes: images of the training and the validation split.
        date: when it was shipped (default: now, UTC).
        made_with: the versions line's entries (default: `versions()`).
        dataset: the data's name in words (e.g. "Fashion-MNIST").

    Returns:
        The card's text.
    """
    data = config["data"]
    where = f"`{data['source']}` files in `{data['dir']}`" if data.get("dir") else "TFDS"
    final = run_metrics.get("final", {})
    train_seconds = final.get("train_seconds")
    lines = [
        f"# {out.name}",
        "",
        f"A kmixvae mixture-of-VAEs ({config['model']['num_channels']} channels with "
        f"{config['model']['latent']['dim']}-d latents, {config['model']['decoder']['conditioning']} "
        f"decoder, {config['model']['decoder']['head']} head) trained without labels on "
        f"{dataset} by `{command}`. Saved for inference (weights and config, no optimizer "
        f"state): {size / 1e6:.1f} MB. It loads on TensorFlow and JAX. It ships in the package "
        f"as the preset `{out.stem}`: every `kmixvae` command takes that name as its model, "
        f"and Python loads it with `kmixvae.load_preset({out.stem!r})`.",
        "",
        f"    kmixvae sample {out.stem} --channel 3 --n 16 --out channel3.png",
        f"    kmixvae evaluate {out.stem} --data-dir DIR --split {shlex.quote(data['val_split'])}",
        "",
        "## Data and split",
        "",
        f"- data: {dataset} `{data['name']}` from {where}",
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
        f"- date: {date or datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- training: {run_metrics.get('epochs', '-')} epochs"
        + (f", {train_seconds:.0f} s" if isinstance(train_seconds, float) else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in (made_with or versions()).items()),
        "",
        "## Metrics (`kmixvae evaluate`, on the validation split)",
        "",
        f"{metrics.get('num_images', '-')} images of `{metrics.get('split', '-')}`; likelihood "
        f"scale: {metrics.get('likelihood_scale', '-')}, {metrics.get('likelihood_units', '')}; "
        f"IWAE with k = {metrics.get('iwae_samples', '-')}.",
        "",
        "| kind | metric | value |",
        "|---|---|---|",
        *metric_rows(metrics),
        "",
    ]
    judged = judge_line(metrics)
    if judged:
        lines += [judged, ""]
    lines += [
        "## Channels",
        "",
        f"Specialised: usage >= {metrics.get('usage_min', '-')} and purity >= "
        f"{metrics.get('purity_min', '-')}. Matched label: the one-to-one matching that scores "
        "the accuracy.",
        "",
        "| channel | status | images | usage | purity | majority label | matched label "
        "| sample consistency |",
        "|---|---|---|---|---|---|---|---|",
        *channel_rows(metrics),
        "",
        "## Config (resolved)",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def description(dataset: str, config: dict, metrics: dict) -> str:
    """The preset's one line for `kmixvae presets`: data, architecture, measured accuracy."""
    model = config["model"]
    accuracy = metrics.get("accuracy")
    scored = (
        f" ({accuracy:.1%} clustering accuracy on {metrics.get('split', 'its validation split')})"
        if isinstance(accuracy, float)
        else ""
    )
    return (
        f"{dataset}, {model['num_channels']} channels with {model['latent']['dim']}-d latents, "
        f"{model['decoder']['conditioning']} decoder, {model['decoder']['head']} head; "
        f"trained without labels{scored}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="ship this finished run folder instead of training one")
    parser.add_argument(
        "--command", help="with --run: the exact command that trained it (for the card)"
    )
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=sorted(PRESETS),
        help=f"what to train and how to describe it (default {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--out",
        help=f"model file (default {PRESETS_DIR}/<preset>.keras; the preset's name is its stem)",
    )
    parser.add_argument("--iwae-samples", type=int, default=100)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    out = Path(args.out or f"{PRESETS_DIR}/{args.preset}.keras")
    if out.suffix != ".keras":
        print(f"error: --out {str(out)!r}: must end with .keras", file=sys.stderr)
        return 2
    if args.run:
        if not args.command:
            print("error: --run needs --command (the command that trained it)", file=sys.stderr)
            return 2
        run_dir, command, first = Path(args.run), args.command, ""
    else:
        run_dir = Path("runs") / f"ship_{args.preset}_{time.strftime('%Y%m%d_%H%M%S')}"
        command, first = run_main_job(run_dir, args.preset)

    from kmixvae import config as config_lib
    from kmixvae.data import load_split
    from kmixvae.errors import KmixvaeError
    from kmixvae.evaluation.evaluate import evaluate_model, format_report
    from kmixvae.evaluation.generation import default_judge_cache_dir, load_or_train_judge
    from kmixvae.presets import write_entry
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
    print(format_report(metrics))
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    card = model_card(
        out=out,
        run_dir=run_dir,
        command=command,
        first_line=first,
        config=config_lib.to_dict(cfg),
        metrics=metrics,
        run_metrics=run_metrics,
        size=out.stat().st_size,
        split_sizes=(train_count, len(labels)),
        dataset=PRESETS[args.preset]["dataset"],
    )
    card_path = out.with_suffix(".md")
    atomic_write_text(card_path, card)
    index = write_entry(
        out.parent,
        out.stem,
        file=out.name,
        card=card_path.name,
        description=description(PRESETS[args.preset]["dataset"], config_lib.to_dict(cfg), metrics),
    )
    print(f"ship: wrote {out} ({out.stat().st_size / 1e6:.1f} MB), {card_path} and {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
