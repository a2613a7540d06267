"""The `kmixvae` command-line application (click).

Every bad input (config, data, model file, argument) ends with one line on
stderr, `error: ...`, and exit code 2, before anything is written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

# TensorFlow reads this once, when it is imported: only its errors reach stderr.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402


def _tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported (an import hook that blocks it counts as absent)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and Keras without their start-up lines on stderr.

    TensorFlow's C++ libraries print `WARNING: All log messages before
    absl::InitializeLog() ...` and the oneDNN notice while they load, whatever
    TF_CPP_MIN_LOG_LEVEL says. This imports both with file descriptor 2
    pointed at a temporary file, replays that file if the import fails, and
    sets absl's Python logging to errors only. With TF_CPP_MIN_LOG_LEVEL set
    to 0 or 1 by the user, nothing is hidden.
    """
    if "tensorflow" not in sys.modules and os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("0", "1"):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                import keras  # noqa: F401

                if _tensorflow_installed():
                    import tensorflow  # noqa: F401
            except BaseException:
                os.dup2(saved, 2)
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


# The config module imports Keras (the objectives are Keras-serialisable): load
# Keras and TensorFlow now, before any kmixvae import, with their start-up noise
# kept off stderr.
import_tensorflow_quietly()

from kmixvae import config as config_lib  # noqa: E402
from kmixvae.errors import ConfigError, KmixvaeError, ModelFileError  # noqa: E402
from kmixvae.runs.interrupts import Interrupted, signals_as_interrupt  # noqa: E402
from kmixvae.utils.files import os_error_line  # noqa: E402

EXIT_BAD_INPUT = 2
SEED_MAX = 2**32 - 1  # what keras.utils.set_random_seed and numpy take


class _Group(click.Group):
    """Turns `KmixvaeError` and operating-system errors into one line and exit code 2;
    Ctrl-C and SIGTERM into one line and exit code 130 or 143."""

    def invoke(self, ctx):
        try:
            with signals_as_interrupt():
                return super().invoke(ctx)
        except KmixvaeError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except OSError as e:  # one that no kmixvae function wraps (e.g. a folder it creates)
            click.echo(f"error: {os_error_line(e)}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except click.UsageError as e:  # a bad argument of a subcommand: one line too
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                raise  # `kmixvae config` alone: click prints the group's help
            click.echo(f"error: {e.format_message()}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt as e:
            interrupt = e if isinstance(e, Interrupted) else Interrupted.of(e)
            click.echo(interrupt.message(), err=True)
            ctx.exit(interrupt.exit_code)


SET_HELP = "Override a config value, e.g. --set model.decoder.conditioning=film (repeatable)."
DATA_DIR_HELP = (
    "Train/evaluate from local files in DIR: IDX files (train-images-idx3-ubyte[.gz], ...), "
    "an .npz (or DIR is the .npz file), or PNG/JPEG files (one sub-folder per class gives "
    "labels; a flat folder gives none). Sets data.dir, and data.source to idx, npz or folder "
    "from what DIR holds."
)


def _load(config_path, overrides, data_dir=None) -> config_lib.Config:
    from kmixvae.runs import detect_source

    raw = config_lib.read_json(config_path)
    raw = config_lib.apply_overrides(raw, list(overrides))
    if data_dir is not None:
        source = detect_source(data_dir)
        data = raw.setdefault("data", {})
        if not isinstance(data, dict):
            raise ConfigError("data: expected an object")
        data["dir"] = str(data_dir)
        if data.get("source", "tfds") != source:
            click.echo(f"--data-dir: data.source={source} (local files in {data_dir})")
            data["source"] = source
    return config_lib.from_dict(raw)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmixvae")
@click.pass_context
def main(ctx):
    """kmixvae: mixture-of-VAEs with decentralized latents (Keras 3, TensorFlow or JAX).

    Choose the backend with KERAS_BACKEND=tensorflow|jax. Every MODEL_PATH is a
    .keras file, a run folder or a preset name (`kmixvae presets` lists them).
    On JAX, compiled programs are kept for the next run in
    $KMIXVAE_CACHE_DIR/jax (default ~/.cache/kmixvae/jax); KMIXVAE_COMPILE_CACHE=off
    turns that off. On a CPU, XLA runs the convolutions with its Eigen kernels
    (faster here than YNNPACK's); KMIXVAE_XLA_CPU_CONVOLUTIONS=ynn keeps jaxlib's default.
    """
    from kmixvae.utils.compile_cache import use_compile_cache
    from kmixvae.utils.xla_cpu_flags import convolution_switch

    convolution_switch()
    use_compile_cache()


# --------------------------------------------------------------------------- config


@main.group("config")
def config_group():
    """Validate and show configs."""


@config_group.command("validate")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, help=SET_HELP)
def config_validate(config_file, overrides):
    """Check CONFIG_FILE; exit 2 with the offending key if it is invalid."""
    _load(config_file, overrides)
    click.echo(f"{config_file}: valid")


@config_group.command("show")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, help=SET_HELP)
def config_show(config_file, overrides):
    """Print the resolved config (every default filled in) as JSON."""
    cfg = _load(config_file, overrides)
    click.echo(json.dumps(config_lib.to_dict(cfg), indent=2))


# --------------------------------------------------------------------------- fit


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="JSON config file.")
@click.option("--set", "overrides", multiple=True, help=SET_HELP)
@click.option("--data-dir", type=click.Path(), help=DATA_DIR_HELP)
@click.option(
    "--run-dir", type=click.Path(), help="Folder of the new run (default runs/<name>__<time>)."
)
@click.option("--resume", "resume", type=click.Path(), help="Continue the run in this folder.")
@click.option(
    "--verbose",
    is_flag=True,
    help="Print the whole resolved config, the model as built and Keras' progress bar with "
    "every metric (default: a few lines, then one short line per epoch).",
)
def fit(config_file, overrides, data_dir, run_dir, resume, verbose):
    """Train a model; write a run folder and saved_models/<name>.keras.

    With --resume, --set takes only the learning rates, training.clipnorm and
    training.epochs (recorded in the run folder).
    """
    from kmixvae.runs import check_run_dir
    from kmixvae.training import resume as resume_lib
    from kmixvae.training.fit import fit_run

    if resume:
        if config_file or run_dir:
            raise ConfigError(
                "--resume continues a run with its own config.json: drop --config and --run-dir"
            )
        resume_lib.check_resume_overrides(overrides)
        path = check_run_dir(resume)
        resume_lib.check_resume_data_dir(path, data_dir)
        cfg = _load(path / "config.json", overrides, data_dir)
        complete = resume_lib.completion_message(path, cfg)
        if complete:
            click.echo(complete)
            return
        resume_lib.record_resume_overrides(path, overrides)
    else:
        if not config_file:
            raise ConfigError("fit needs --config FILE (or --resume RUN_DIR)")
        cfg = _load(config_file, overrides, data_dir)
    if verbose:
        click.echo("resolved config:\n" + json.dumps(config_lib.to_dict(cfg), indent=2))
    fit_run(
        cfg,
        run_dir=run_dir,
        resume=resume,
        verbose="auto" if sys.stdout.isatty() else 2,
        log=click.echo,
        full_output=verbose,
    )


# --------------------------------------------------------------------------- inference


def _data_options(f):
    f = click.option(
        "--split",
        default=None,
        help="Split, e.g. 'test[80%:]' (default: the val_split of the run or of the model file).",
    )(f)
    f = click.option(
        "--dataset", default=None, help="TFDS dataset name (when not using --data-dir)."
    )(f)
    f = click.option("--data-dir", type=click.Path(), help=DATA_DIR_HELP)(f)
    return f


def _judge_options(f):
    """`--judge-split` and `--samples-per-channel`, shared by `evaluate` and `visualize`."""
    f = click.option(
        "--samples-per-channel",
        default=200,
        show_default=True,
        type=click.IntRange(0),
        help="Prior draws per active channel the judge scores (0: no judge, no generation scores).",
    )(f)
    f = click.option(
        "--judge-split",
        default=None,
        help="Labelled split the generation judge (a classifier of the labels) learns from; it must "
        "not share images with --split (default: the training split of the run, or the one a "
        "model file carries).",
    )(f)
    return f


def _resolve_model(ctx, param, value):
    """A model argument: a `.keras` file, a run folder, or a preset name (`kmixvae presets`)."""
    from kmixvae.presets import resolve_model_path

    return resolve_model_path(value)


# Every command's MODEL_PATH: a .keras file, a run folder or a preset name.
_model_argument = click.argument("model_path", type=click.Path(), callback=_resolve_model)


def _out_file(path, suffix):
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise ConfigError(f"--out {str(p)!r}: must end with {suffix}")
    if p.exists() and p.is_dir():
        raise ConfigError(f"--out {str(p)!r}: is a folder")
    return p


@main.command()
@_model_argument
@_data_options
@click.option("--iwae-samples", default=100, show_default=True, type=click.IntRange(1))
@click.option("--usage-min", default=0.02, show_default=True, type=click.FloatRange(0, 1))
@click.option("--purity-min", default=0.80, show_default=True, type=click.FloatRange(0, 1))
@_judge_options
@click.option(
    "--out", type=click.Path(), help="metrics JSON (default: <run>/eval_metrics.json for a run)."
)
def evaluate(
    model_path,
    data_dir,
    dataset,
    split,
    iwae_samples,
    usage_min,
    purity_min,
    judge_split,
    samples_per_channel,
    out,
):
    """Clustering, per-channel specialisation, likelihood and generation of a saved model."""
    from kmixvae.evaluation.evaluate import evaluate_model, format_report, write_metrics_json
    from kmixvae.runs import load_judge, model_and_data

    out_path = _out_file(out, ".json") if out else None
    model, images, labels, split = model_and_data(model_path, data_dir, split, dataset)
    judge = skipped = None
    if samples_per_channel and labels is not None:
        judge, skipped = load_judge(model_path, data_dir, dataset, judge_split, images, split)
        if skipped:
            click.echo(skipped)
    metrics = evaluate_model(
        model,
        images,
        labels,
        iwae_samples=iwae_samples,
        usage_min=usage_min,
        purity_min=purity_min,
        judge=judge,
        samples_per_channel=samples_per_channel,
    )
    metrics["split"] = split
    if skipped:
        metrics["generation_skipped"] = skipped
    click.echo(format_report(metrics))
    if out_path is None and Path(model_path).is_dir():
        out_path = Path(model_path) / "eval_metrics.json"
    if out_path is not None:
        write_metrics_json(metrics, out_path)
        click.echo(f"wrote {out_path}")


@main.command()
@_model_argument
@_data_options
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Folder (default: <run>/figures)."
)
@click.option("--max-points", default=5000, show_default=True, type=click.IntRange(1))
@_judge_options
def visualize(
    model_path, data_dir, dataset, split, out_dir, max_points, judge_split, samples_per_channel
):
    """Draw every figure of what each channel learned (PNG)."""
    from kmixvae.evaluation.generation import generation_metrics
    from kmixvae.runs import history_columns, load_judge, model_and_data, read_history_csv
    from kmixvae.viz.figures import LABEL_FIGURES, make_all_figures

    if out_dir is None:
        if not Path(model_path).is_dir():
            raise ConfigError(
                "visualize: give --out DIR for a model file (a run folder defaults to <run>/figures)"
            )
        out_dir = Path(model_path) / "figures"
    model, images, labels, split = model_and_data(model_path, data_dir, split, dataset)
    history = None
    hist_file = Path(model_path) / "history.csv"
    if Path(model_path).is_dir() and hist_file.is_file():
        history = history_columns(read_history_csv(hist_file))
    generation = None
    if samples_per_channel and labels is None:
        click.echo("generation scores skipped (the data has no labels)")
    elif samples_per_channel:
        judge, skipped = load_judge(model_path, data_dir, dataset, judge_split, images, split)
        if skipped:
            click.echo(skipped)
        else:
            generation = generation_metrics(
                model, judge, images, labels, n_per_channel=samples_per_channel
            )
    if labels is None:
        click.echo("figures skipped (the data has no labels): " + ", ".join(LABEL_FIGURES))
    paths = make_all_figures(
        model,
        images,
        labels,
        out_dir,
        history=history,
        max_points=max_points,
        generation=generation,
    )
    for p in paths:
        click.echo(f"wrote {p}")


@main.command()
@_model_argument
@click.option("--channel", type=int, default=None, help="Channel to sample (default: the mixture).")
@click.option("--n", "n", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, SEED_MAX))
@click.option("--out", required=True, type=click.Path(), help="PNG grid.")
def sample(model_path, channel, n, seed, out):
    """Draw N samples from the prior of one channel (or of the mixture)."""
    from kmixvae.runs import load_model_file
    from kmixvae.viz.grids import save_image_grid

    out_path = _out_file(out, ".png")
    model = load_model_file(model_path)
    if channel is not None and not 0 <= channel < model.num_channels:
        raise ConfigError(f"--channel: {channel} is out of range 0..{model.num_channels - 1}")
    if channel is not None and channel not in model.active_channels:
        raise ConfigError(
            f"--channel: {channel} is masked in this model (active: {list(model.active_channels)})"
        )
    result = model.sample(n, channel=channel, seed=seed)
    save_image_grid(
        result["mean"], out_path, title=f"channel {channel}" if channel is not None else "mixture"
    )
    click.echo(f"wrote {out_path}")


@main.command()
@_model_argument
@_data_options
@click.option("--n", "n", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option(
    "--out", required=True, type=click.Path(), help="PNG: originals over reconstructions."
)
def reconstruct(model_path, data_dir, dataset, split, n, out):
    """Reconstruct N images with their chosen channel."""
    import numpy as np

    from kmixvae.runs import model_and_data
    from kmixvae.viz.grids import save_image_grid

    out_path = _out_file(out, ".png")
    model, images, _, split = model_and_data(model_path, data_dir, split, dataset)
    if n > len(images):
        raise ConfigError(
            f"--n: {n} exceeds the {len(images)} images of split {split!r} "
            f"(use --n {len(images)} or a larger --split)"
        )
    x = images[:n]
    rec = model.reconstruct(x)
    save_image_grid(
        np.concatenate([x, rec["mean"]]),
        out_path,
        rows=2,
        title=f"{split}: originals / reconstructions",
    )
    click.echo(f"wrote {out_path}")


@main.command()
@_model_argument
@_data_options
@click.option(
    "--out", required=True, type=click.Path(), help=".npz with q, mu, var, channel, label."
)
def encode(model_path, data_dir, dataset, split, out):
    """Encode a split: q(c|x), per-channel posterior means/variances, chosen channel."""
    import numpy as np

    from kmixvae.runs import model_and_data
    from kmixvae.utils.files import atomic_write
    from kmixvae.utils.progress import encode_with_progress

    out_path = _out_file(out, ".npz")
    model, images, labels, split = model_and_data(model_path, data_dir, split, dataset)

    enc = encode_with_progress(model, images, label=f"encode {split}")
    if labels is None:
        click.echo("label: not written (the data has no labels)")
    else:
        enc["label"] = labels

    atomic_write(out_path, lambda tmp: np.savez_compressed(open(tmp, "wb"), **enc))
    click.echo(f"wrote {out_path} ({len(images)} images of {split})")


@main.command("export-projector")
@_model_argument
@_data_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Log folder (default <run>/tensorboard/projector).",
)
@click.option("--max-samples", default=2000, show_default=True, type=click.IntRange(1))
def export_projector_cmd(model_path, data_dir, dataset, split, out_dir, max_samples):
    """Write TensorBoard embedding-projector files for a saved model."""
    from kmixvae.runs import model_and_data
    from kmixvae.viz.projector import export_projector

    if out_dir is None:
        if not Path(model_path).is_dir():
            raise ConfigError("export-projector: give --out DIR for a model file")
        out_dir = Path(model_path) / "tensorboard"
    model, images, labels, split = model_and_data(model_path, data_dir, split, dataset)
    path = export_projector(model, images, labels, str(out_dir), max_samples=max_samples)
    click.echo(f"wrote projector files to {path}; view with: tensorboard --logdir {out_dir}")


@main.command()
@_model_argument
@_data_options
@click.option(
    "--metrics",
    "metrics_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Also show this metrics JSON (e.g. from evaluate --out); repeatable.",
)
@click.option(
    "--out", type=click.Path(), help="HTML file (default: <run>/report.html for a run folder)."
)
def report(model_path, data_dir, dataset, split, metrics_files, out):
    """Write one self-contained HTML page: metrics, curves, channels, reconstructions, config."""
    from kmixvae.runs import model_and_data
    from kmixvae.viz.report import write_report

    out_path = _out_file(out, ".html") if out else None
    if out_path is None and not Path(model_path).is_dir():
        raise ConfigError("report: give --out FILE.html for a model file")
    extra = {}
    for f in metrics_files:
        try:
            extra[Path(f).name] = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--metrics {f!r}: not a readable JSON file ({e})") from None
        if not isinstance(extra[Path(f).name], dict):
            raise ConfigError(f"--metrics {f!r}: holds no JSON object")
    model, images, labels, split = model_and_data(model_path, data_dir, split, dataset)
    if labels is None:
        click.echo("report: not written (the data has no labels)")
        return
    path = write_report(
        model_path,
        out_path,
        model=model,
        images=images,
        labels=labels,
        split=split,
        metric_files=extra,
    )
    click.echo(f"wrote {path}")


@main.command()
def presets():
    """List the shipped models (presets), each with a one-line description.

    Any command's MODEL_PATH takes a preset name: `kmixvae sample mnist_film_het --out x.png`.
    """
    from kmixvae.presets import PRESETS_DIR, list_presets

    found = list_presets()
    if not found:
        click.echo(f"no presets installed (in {PRESETS_DIR})")
        return
    width = max(len(name) for name in found)
    for name, description in found.items():
        click.echo(f"{name:<{width}}  {description}")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--csv", "csv_out", type=click.Path(), help="Also write the table as CSV.")
def compare(run_dirs, csv_out):
    """Compare runs: their config differences and metrics, side by side."""
    from kmixvae.training.compare import compare_runs, to_csv, to_markdown

    csv_path = _out_file(csv_out, ".csv") if csv_out else None
    table = compare_runs(run_dirs)
    click.echo(to_markdown(table))
    if csv_path:
        from kmixvae.utils.files import atomic_write_text

        atomic_write_text(csv_path, to_csv(table))
        click.echo(f"wrote {csv_path}")


__all__ = ["main", "ModelFileError"]


if __name__ == "__main__":
    main()
