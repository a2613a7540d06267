"""`fit_run`: train a model from a config into a run folder (and resume one).

A run folder `runs/<name>__<YYYYmmdd_HHMMSS>/` holds `config.json`,
`model_summary.txt`, `history.csv`, `metrics.json`, `checkpoints/`
(`last.keras` + `last.json`, `best.keras`), `tensorboard/` and `model.keras`.
Every file is written through a temporary file and a rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import time
from datetime import datetime
from pathlib import Path

import keras

from kmixvae import config as config_lib
from kmixvae.errors import ConfigError, ModelFileError, TrainingError
from kmixvae.utils.files import atomic_write_text

RUN_MARKER = "config.json"


@dataclasses.dataclass
class RunResult:
    """What `fit_run` leaves behind."""

    run_dir: Path
    model: keras.Model
    history: list[dict]
    metrics: dict
    saved_model: Path


def new_run_dir(config: config_lib.Config, run_dir: str | None = None) -> Path:
    """`run_dir` if given, else `<output.runs_dir>/<name>__<timestamp>`; must not exist."""
    if run_dir is None:
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        path = Path(config.output.runs_dir) / f"{config.name}__{stamp}"
    else:
        path = Path(run_dir)
    if path.exists() and any(path.iterdir()):
        raise ConfigError(
            f"run folder {str(path)!r} already exists and is not empty (use --resume to continue it)"
        )
    return path


def check_run_dir(path: str | Path) -> Path:
    """Checks that `path` is a kmixvae run folder."""
    p = Path(path)
    if not p.is_dir():
        raise ModelFileError(f"run folder {str(p)!r} does not exist")
    if not (p / RUN_MARKER).is_file():
        raise ModelFileError(f"{str(p)!r} is not a kmixvae run folder (no {RUN_MARKER})")
    return p


def make_optimizer(config: config_lib.Config, steps_per_epoch: int):
    t = config.training
    lr = t.learning_rate
    if t.restart_epoch > 0:
        from kmixvae.training.schedules import PhasedLearningRate

        restart_lr = t.restart_learning_rate if t.restart_learning_rate is not None else lr
        lr = PhasedLearningRate(
            [
                [lr, t.lr_final, t.restart_epoch * steps_per_epoch],
                [restart_lr, t.lr_final, (t.epochs - t.restart_epoch) * steps_per_epoch],
            ],
            cosine=t.lr_schedule == "cosine",
        )
    elif t.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, t.epochs * steps_per_epoch)
        )
    kwargs = {"learning_rate": lr}
    if t.clipnorm is not None:
        kwargs["clipnorm"] = t.clipnorm
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    if t.optimizer not in classes:
        raise ConfigError(f"training.optimizer: {t.optimizer!r} is not one of {', '.join(classes)}")
    return classes[t.optimizer](**kwargs)


def describe_run(config: config_lib.Config, model, dist) -> str:
    """The 'what was built' block that fit prints and saves."""
    cur = config.curriculum
    lines = [
        f"backend: {keras.backend.backend()}",
        f"devices: {', '.join(dist.devices)}",
        f"distribution: {dist.description}",
        f"precision: {config.precision}",
        "model (as built):",
        model.describe_text(),
        "curriculum: "
        + (
            f"{cur.schedule}, {cur.start_channels} -> {cur.max_channels or config.model.num_channels} "
            f"channels, unlock_init={cur.unlock_init}"
            if cur.enabled
            else "off (all channels from the start)"
        ),
    ]
    return "\n".join(lines)


def _summary_text(model) -> str:
    buf = io.StringIO()
    model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
    return buf.getvalue()


def fit_run(
    config: config_lib.Config,
    *,
    run_dir: str | None = None,
    resume: str | None = None,
    verbose: int | str = "auto",
    log=print,
    full_output: bool = True,
) -> RunResult:
    """Trains the model the config describes; writes or continues a run folder.

    Args:
        config: the resolved config (for `resume`, the run's own `config.json`).
        run_dir: folder of a new run (default: under `output.runs_dir`).
        resume: folder of a run to continue from its last completed epoch.
        verbose: Keras progress verbosity (with `full_output`).
        log: function printing one message.
        full_output: bool. Print what was built and Keras' progress bar with
            every metric; False prints a few lines about the run and one
            short line per epoch (`kmixvae.training.progress`).

    Returns:
        A `RunResult`.
    """
    from kmixvae.data import load_datasets
    from kmixvae.models.factory import build_model
    from kmixvae.training import callbacks as cb
    from kmixvae.training.curriculum import ChannelCurriculum
    from kmixvae.training.distribution import configure_distribution

    dist = configure_distribution(config)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(config.precision)
    data = load_datasets(config)
    dist.check_batch_size(config.data.batch_size)
    log(f"input pipeline: {describe_pipeline(config.data.pipeline)}")

    if resume is not None:
        path = check_run_dir(resume)
        state_file = path / "checkpoints" / "last.json"
        if not state_file.is_file():
            raise ModelFileError(f"run {str(path)!r} has no completed epoch to resume from")
        state = json.loads(state_file.read_text())
    else:
        path = new_run_dir(config, run_dir)
        state = None
    path.mkdir(parents=True, exist_ok=True)
    ckpt_dir = path / "checkpoints"
    config_lib.save_config(config, path / "config.json")

    steps = config.training.steps_per_epoch or data.steps_per_epoch()
    with dist.scope():
        if state is not None:
            model = load_model_file(ckpt_dir / "last.keras")
        else:
            model = build_model(config, data.image_shape)
            model.compile(optimizer=make_optimizer(config, steps))
    initial_epoch = state["epochs_done"] if state else 0

    from kmixvae.training import progress

    info = describe_run(config, model, dist)
    log(info if full_output else progress.summarize_config(config, path))
    atomic_write_text(path / "model_summary.txt", info + "\n\n" + _summary_text(model))

    gate = cb.CurriculumGate()
    callbacks: list[keras.callbacks.Callback] = [progress.DropUncomputedValidation()]
    curriculum = None
    if config.curriculum.enabled:
        c = config.curriculum
        curriculum = ChannelCurriculum(
            max_channels=c.max_channels or config.model.num_channels,
            start_channels=c.start_channels,
            schedule=c.schedule,
            unlock_every=c.unlock_every,
            unlock_epochs=c.unlock_epochs,
            monitor=c.monitor,
            patience=c.patience,
            min_delta=c.min_delta,
            unlock_init=c.unlock_init,
            split_noise=c.split_noise,
            seed=config.seed,
        )
        if state and "curriculum" in state:
            curriculum.set_state(state["curriculum"])
        gate.curriculum = curriculum
        callbacks.append(curriculum)
    if config.loss.kl_warmup_epochs > 0:
        callbacks.append(cb.KLWarmup(config.loss.kl_warmup_epochs))
    if config.loss.elbo_start_epoch > 0:
        callbacks.append(cb.ElboStart(config.loss.elbo_start_epoch))
    if config.loss.self_label_weight > 0:
        callbacks.append(cb.SelfLabelStart(config.loss.self_label_start_epoch))
    if config.training.restart_epoch > 0:
        callbacks.append(cb.OptimizerRestart(config.training.restart_epoch))
    callbacks.append(cb.LearningRateLogger())
    if data.val_labels is not None:
        callbacks.append(
            cb.HeldOutClustering(
                data.val_images,
                data.val_labels,
                start_seconds=(state or {}).get("train_seconds", 0.0),
            )
        )
    nan_guard = cb.NaNGuard()
    callbacks.append(nan_guard)
    history_rows = []
    if state and (path / "history.csv").is_file():
        history_rows = [
            r for r in cb.read_history_csv(path / "history.csv") if r["epoch"] <= initial_epoch
        ]
    history = cb.HistoryWriter(path / "history.csv", rows=history_rows)
    callbacks.append(history)

    def extra_state():
        extra = {}
        if curriculum is not None:
            extra["curriculum"] = curriculum.get_state()
        for callback in callbacks:
            if isinstance(callback, cb.HeldOutClustering):
                extra["train_seconds"] = callback.seconds
        return extra

    has_val = data.num_val > 0
    monitor = "val_loss" if has_val else "loss"
    callbacks.append(
        cb.Checkpointer(
            ckpt_dir, gate, monitor=monitor, state_fn=extra_state, best=(state or {}).get("best")
        )
    )
    es = config.training.early_stopping
    if es.enabled:
        callbacks.append(
            cb.GatedEarlyStopping(
                gate, monitor=es.monitor, patience=es.patience, min_delta=es.min_delta, verbose=1
            )
        )
    if config.output.tensorboard:
        callbacks.extend(_tensorboard_callbacks(config, path, data))
    if not full_output:
        callbacks.append(progress.EpochLine(config.training.epochs, log=log))

    if config.data.neighbors > 0:
        from kmixvae.data.neighbors import mutual_neighbors, pixel_neighbors
        from kmixvae.data.pipeline import neighbor_dataset, neighbor_table

        t_nbr = time.perf_counter()
        neighbors = pixel_neighbors(data.train_images, config.data.neighbors)
        if config.data.neighbor_mutual:
            neighbors = mutual_neighbors(neighbors)
        log(
            f"neighbour pairs: k={config.data.neighbors}"
            f"{' mutual' if config.data.neighbor_mutual else ''} in pixel space "
            f"({time.perf_counter() - t_nbr:.1f} s)"
        )
        if config.data.neighbor_refresh_epoch > 0:
            table = neighbor_table(neighbors, config.data.pipeline)
            callbacks.insert(
                0,
                cb.NeighborRefresh(
                    config.data.neighbor_refresh_epoch,
                    data.train_images,
                    table,
                    path / "neighbors_refreshed.npy",
                    k=config.data.neighbors,
                    mutual=config.data.neighbor_mutual,
                    log=log,
                ),
            )
            neighbors = table
        train_ds = neighbor_dataset(
            data.train_images,
            neighbors,
            config.data.batch_size,
            seed=config.seed,
            pipeline=config.data.pipeline,
        )
    else:
        train_ds = data.train_dataset(seed=config.seed)
    val_ds = data.val_dataset() if has_val else None
    t0 = time.perf_counter()
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.training.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=config.training.steps_per_epoch,
            callbacks=callbacks,
            verbose=verbose if full_output else 0,
            shuffle=False,  # the input pipeline shuffles with the config seed
        )
    except Exception as e:  # out of memory is the one failure users must act on
        if _is_oom(e):
            raise TrainingError(
                f"out of memory while training (batch {config.data.batch_size}, "
                f"{config.model.num_channels} channels): lower data.batch_size; "
                f"the last completed epoch is in {ckpt_dir}"
            ) from None
        raise
    wall = time.perf_counter() - t0
    if nan_guard.failure:
        raise TrainingError(
            f"training stopped: {nan_guard.failure}; the last good checkpoint is {ckpt_dir / 'last.keras'} "
            f"(resume with --resume {path} after lowering training.learning_rate or setting training.clipnorm)"
        )

    rows = history.rows
    metrics = summarize_history(rows, monitor)
    metrics["fit_wall_seconds_this_session"] = wall
    if curriculum is not None:
        metrics["unlock_events"] = curriculum.events
    atomic_write_text(path / "metrics.json", json.dumps(metrics, indent=2) + "\n")

    from kmixvae.training.callbacks import save_model_atomic

    save_model_atomic(model, path / "model.keras")
    saved = Path(config.output.saved_model or f"saved_models/{config.name}.keras")
    save_model_atomic(model, saved)
    if config.output.report:
        _write_report(path, model, data, config, log)
    log(f"run folder: {path}")
    log(f"saved model: {saved}")
    return RunResult(run_dir=path, model=model, history=rows, metrics=metrics, saved_model=saved)


def _write_report(path: Path, model, data, config, log) -> None:
    """Writes the run's `report.html`; a failure is reported, never fatal to the run."""
    from kmixvae.viz.report import write_report

    has_val = data.num_val > 0 and data.val_labels is not None
    images = data.val_images if has_val else data.train_images
    labels = data.val_labels if has_val else data.train_labels
    if labels is None:
        log("report: not written (the data has no labels)")
        return
    split = config.data.val_split if has_val else config.data.train_split
    try:
        out = write_report(path, model=model, images=images, labels=labels, split=split)
    except Exception as e:  # the model and metrics are saved already: say what failed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        log(f"report: not written ({type(e).__name__}: {first[:200]})")
        return
    log(f"report: {out}")


def describe_pipeline(name: str) -> str:
    """One line naming the input pipeline `data.pipeline` resolves to."""
    from kmixvae.data.pipeline import resolve_pipeline

    chosen = resolve_pipeline(name)
    what = "tf.data" if chosen == "tf_data" else "in-memory arrays (keras.utils.PyDataset)"
    return f"{what} (data.pipeline={name})"


def summarize_history(rows: list[dict], monitor: str) -> dict:
    """Final and best figures of a run, from its history rows."""
    if not rows:
        return {}
    final = rows[-1]
    out = {"epochs": int(final["epoch"]), "final": final}
    candidates = [r for r in rows if monitor in r and math.isfinite(r[monitor])]
    if "active_channels" in final:
        full = [r for r in candidates if r.get("active_channels") == final["active_channels"]]
        candidates = full or candidates
    if candidates:
        best = min(candidates, key=lambda r: r[monitor])
        out["best"] = {"monitor": monitor, "epoch": int(best["epoch"]), "values": best}
    return out


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    text = f"{type(e).__name__} {e}"
    return "ResourceExhausted" in text or "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def _tensorboard_callbacks(config, path, data):
    from kmixvae.training import callbacks as cb
    from kmixvae.viz.tensorboard_events import epoch_scalars_callback

    tb_dir = path / "tensorboard"
    callbacks = [epoch_scalars_callback(tb_dir)]
    images = data.val_images if data.num_val > 0 else data.train_images
    labels = data.val_labels if data.num_val > 0 else data.train_labels
    images = images[: max(16, config.output.projector_samples)].astype("float32") / 255.0
    labels = None if labels is None else labels[: len(images)]

    def write_images(model, epoch):
        from kmixvae.viz.tensorboard_images import write_image_summaries

        write_image_summaries(model, images[:16], str(tb_dir / "images"), epoch)

    callbacks.append(
        cb.PeriodicCallback(write_images, config.output.image_every, config.training.epochs)
    )
    if config.output.projector and labels is not None:

        def write_projector(model, epoch):
            if epoch != config.training.epochs:
                return
            from kmixvae.viz.projector import export_projector

            # In the logdir root: TensorBoard's projector lists it as run ".".
            export_projector(
                model,
                images,
                labels,
                str(tb_dir),
                max_samples=config.output.projector_samples,
            )

        callbacks.append(
            cb.PeriodicCallback(write_projector, config.training.epochs, config.training.epochs)
        )
    return callbacks


def load_model_file(path: str | Path) -> keras.Model:
    """Loads a kmixvae `.keras` file, or a run folder's model, with one-line errors."""
    from kmixvae.models import MixtureVAE  # registers every kmixvae class

    p = Path(path)
    if p.is_dir():
        check_run_dir(p)
        for candidate in (
            p / "model.keras",
            p / "checkpoints" / "best.keras",
            p / "checkpoints" / "last.keras",
        ):
            if candidate.is_file():
                p = candidate
                break
        else:
            raise ModelFileError(f"run folder {str(path)!r} holds no saved model yet")
    if not p.exists():
        raise ModelFileError(f"model file {str(p)!r} does not exist")
    if p.suffix != ".keras":
        raise ModelFileError(f"model file {str(p)!r} is not a .keras file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = keras.models.load_model(p)
    except Exception as e:  # Keras raises many types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"model file {str(p)!r} cannot be loaded: {first[:200]}") from None
    if not isinstance(model, MixtureVAE):
        raise ModelFileError(
            f"model file {str(p)!r} is not a kmixvae model (it holds a {type(model).__name__})"
        )
    return model
