"""`fit_run`: train a model from a config into a run folder (and resume one).

The run folder's layout, its claim and its model files: `kmixvae.runs`.
Before training, `fit_run` claims the run folder (creating it and its
marker, a real write) and checks that the saved model's path can be
written, so a disk it cannot write fails at once, not after training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the root config composes this part's section: no import at run time
    from kmixvae.config import Config

import dataclasses
import io
import json
import math
import time
import warnings
from pathlib import Path

import keras

from kmixvae.config_files import save_config
from kmixvae.data import load_datasets
from kmixvae.data.neighbors import SPACE_NAMES, input_neighbors, mutual_neighbors
from kmixvae.data.pipeline import neighbor_dataset, neighbor_table, resolve_pipeline
from kmixvae.errors import ConfigError, TrainingError
from kmixvae.evaluation.generation import end_of_run_generation
from kmixvae.models.factory import build_model
from kmixvae.runs import interrupts
from kmixvae.runs.folder import check_run_dir, check_writable, claim_run_dir, release_run_dir
from kmixvae.runs.history import read_history_csv
from kmixvae.runs.model_files import describe_training_data, load_model_file, save_model_atomic
from kmixvae.training import callbacks as cb
from kmixvae.training import processes, progress
from kmixvae.training import resume as resume_lib
from kmixvae.training.channel_pruning import ChannelPruning
from kmixvae.training.curriculum import ChannelCurriculum
from kmixvae.training.distribution import configure_distribution
from kmixvae.training.epoch_schedule import describe_epoch, epoch_steps
from kmixvae.training.head_selection import HeadSelection
from kmixvae.training.optimizers import make_optimizer, prepare_optimizer
from kmixvae.utils.files import atomic_write_text
from kmixvae.utils.images import as_float_images
from kmixvae.viz.projector import export_projector
from kmixvae.viz.report import write_report
from kmixvae.viz.tensorboard_events import epoch_scalars_callback
from kmixvae.viz.tensorboard_images import write_image_summaries


@dataclasses.dataclass
class RunResult:
    """What `fit_run` leaves behind."""

    run_dir: Path
    model: keras.Model
    history: list[dict]
    metrics: dict
    saved_model: Path


def describe_run(config: Config, model, dist) -> str:
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
        "pruning: "
        + (
            f"checks at epochs {', '.join(str(e + 1) for e in config.pruning.check_epochs)}, "
            f"merge_ratio={config.pruning.merge_ratio}, min_usage={config.pruning.min_usage}"
            if config.pruning.enabled
            else "off"
        ),
    ]
    return "\n".join(lines)


def _summary_text(model) -> str:
    buf = io.StringIO()
    model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
    return buf.getvalue()


def fit_run(
    config: Config,
    *,
    run_dir: str | None = None,
    resume: str | None = None,
    verbose: int | str = "auto",
    log=print,
    full_output: bool = True,
    callbacks=(),
) -> RunResult:
    """Trains the model the config describes; writes or continues a run folder.

    Args:
        config: the resolved config (for `resume`, the run's own `config.json`).
        run_dir: folder of a new run (default: under `output.runs_dir`).
        resume: folder of a run to continue from its last completed epoch
            (see `kmixvae.training.resume`; with none, the run starts again).
        verbose: Keras progress verbosity (with `full_output`).
        log: function printing one message.
        full_output: bool. Print what was built and Keras' progress bar with
            every metric; False prints a few lines about the run and one
            short line per epoch (`kmixvae.training.progress`).
        callbacks: more `keras.callbacks.Callback`s, called after the run's
            own (after the checkpoint of each epoch is written) and before
            the last one, which stops the run on Ctrl-C / SIGTERM.

    Returns:
        A `RunResult`.
    """
    dist = configure_distribution(config)
    if not dist.is_chief:  # process 0 writes the run; the others write a private copy
        config, run_dir, resume, log = processes.private_outputs(config, dist, run_dir, resume)
    processes.train_judges_here(dist)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_dtype_policy(config.precision)
    data = load_datasets(config)
    data.shard = dist.data_shard  # each process reads its part of every batch
    dist.check_batch_size(config.data.batch_size)
    data.check_batch_fits()
    if config.data.neighbors > 0:
        data.check_neighbor_graph(
            "data.neighbors", config.data.neighbors, config.data.neighbor_space
        )
    if config.pruning.enabled:
        data.check_neighbor_graph("pruning.neighbors", config.pruning.neighbors)
    if not config.data.drop_remainder:  # else its last, smaller batch is never read
        dist.check_split_batches(
            "data.train_split",
            data.num_train,
            config.data.batch_size,
            way_out="data.drop_remainder=true",
        )
    dist.check_split_batches(
        "data.val_split", _validated_images(config, data), config.data.batch_size
    )
    _check_steps_per_execution(config, data)
    path, state = _open_run_folder(config, run_dir, resume, log)
    try:
        model = _build_or_restore_model(config, data, dist, path, state)
        _write_summary(config, model, dist, path, log, full_output)
        log(f"input pipeline: {describe_pipeline(config.data.pipeline)}")
        steps = _steps_per_epoch(config, data)
        log(f"epoch: {describe_epoch(data.num_train, data.batch_size, steps)}")
        user_callbacks = list(callbacks)
        callbacks = _callbacks(config, data, path, state, log, full_output)
        callbacks[-1:-1] = user_callbacks  # before StopOnSignal
        start_batch = _start_batch(config, data, state, log)
        train_ds = _train_dataset(config, data, callbacks, path, log, start_batch)
        wall = _train(config, model, train_ds, data, callbacks, state, path, verbose, full_output)
        return _finish(config, model, data, callbacks, wall, path, log)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (`kmixvae.runs.interrupts`)
        raise interrupts.Interrupted.of(e, run_dir=path) from None


def _saved_model_path(config) -> Path:
    return Path(config.output.saved_model or f"saved_models/{config.name}.keras")


def _open_run_folder(config, run_dir, resume, log):
    """The run folder (new, or the one resumed) with its config, and the resumed state.

    Every path the run will write is checked first: the saved model's
    (nothing written) and the run folder's, by claiming it and writing its
    config; a new folder that cannot take its config is released again.
    """
    check_writable(_saved_model_path(config))
    if resume is not None:
        path = check_run_dir(resume)
        state = resume_lib.resume_state(path, log)
        save_config(config, path / "config.json")
        return path, state
    path = claim_run_dir(config, run_dir)
    try:
        save_config(config, path / "config.json")
    except BaseException:
        release_run_dir(path, remove_folder=run_dir is None)
        raise
    return path, None


def _check_steps_per_execution(config, data) -> None:
    """An epoch must be whole calls: Keras would run the last call past its end."""
    per_call, steps = config.training.steps_per_execution, _steps_per_epoch(config, data)
    if steps % per_call:
        divisors = [d for d in range(1, min(steps, 64) + 1) if steps % d == 0]
        raise ConfigError(
            f"training.steps_per_execution: {per_call} does not divide the {steps} steps of an "
            f"epoch; use one of {', '.join(map(str, divisors))} or set training.steps_per_epoch"
        )


def _steps_per_epoch(config, data) -> int:
    """Training steps an epoch: `training.steps_per_epoch`, else min(N, `training.epoch_images`)
    images (`kmixvae.training.epoch_schedule`)."""
    t = config.training
    return epoch_steps(
        data.num_train,
        data.batch_size,
        t.epoch_images,
        t.steps_per_epoch,
        drop_remainder=config.data.drop_remainder,
    )


def _validated_images(config, data) -> int:
    """Validation images the per-epoch validation pass reads (`training.validation_images`)."""
    cap = config.training.validation_images
    return data.num_val if cap is None else min(data.num_val, cap)


def _validation_data(config, data):
    """The per-epoch validation batches: a fixed sample of `training.validation_images`."""
    if data.num_val == 0:
        return None
    return data.val_dataset(max_images=config.training.validation_images, seed=config.seed)


def validation_epochs(training) -> list[int]:
    """The 1-based epochs the validation pass runs at: every `validation_freq`-th and the last.

    Args:
        training: the `training` config section.

    Returns:
        Sorted epochs, as Keras' `fit(validation_freq=...)` takes them.
    """
    every, last = training.validation_freq, training.epochs
    return sorted({e for e in range(every, last + 1, every)} | {last})


def _start_batch(config, data, state, log) -> int:
    """Where the training batches start: 0, or after the epochs a resumed run trained."""
    if not state:
        return 0
    start = state["epochs_done"] * _steps_per_epoch(config, data)
    log(f"resume: the training batches continue at batch {start}, as an uninterrupted run's")
    return start


def _build_or_restore_model(config, data, dist, path, state):
    steps = _steps_per_epoch(config, data)
    with dist.scope():
        if state is not None:
            model = load_model_file(path / "checkpoints" / "last.keras")
            resume_lib.rebuild_optimizer(model, config, steps)
            return model
        model = build_model(config, data.image_shape)
        model.compile(
            optimizer=make_optimizer(config, steps),
            steps_per_execution=config.training.steps_per_execution,
        )
        prepare_optimizer(model)
        return model


def _write_summary(config, model, dist, path, log, full_output):
    info = describe_run(config, model, dist)
    log(info if full_output else progress.summarize_config(config, path))
    atomic_write_text(path / "model_summary.txt", info + "\n\n" + _summary_text(model))


def _callbacks(config, data, path, state, log, full_output):
    """The run's callbacks, in order; those with a `state_key` get their resumed state."""
    gate = cb.CurriculumGate()
    callbacks: list[keras.callbacks.Callback] = [progress.DropUncomputedValidation()]
    if config.curriculum.enabled:
        c = config.curriculum
        gate.curriculum = ChannelCurriculum(
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
        callbacks.append(gate.curriculum)
    if config.pruning.enabled:
        settings = {k: v for k, v in dataclasses.asdict(config.pruning).items() if k != "enabled"}
        gate.pruning = ChannelPruning(data.train_images, **settings, seed=config.seed, log=log)
        callbacks.append(gate.pruning)
    if config.model.encoder.heads > 1:
        callbacks.append(
            HeadSelection(
                data.train_images,
                seed=config.seed,
                log=log,
                val_images=data.val_images,
                val_labels=data.val_labels,
            )
        )
    callbacks.append(cb.TermSchedule())
    if config.training.restart_epoch > 0:
        callbacks.append(cb.OptimizerRestart(config.training.restart_epoch))
    callbacks.append(cb.LearningRateLogger())
    if data.val_labels is not None:
        callbacks.append(cb.HeldOutClustering(data.val_images, data.val_labels))
    callbacks.append(cb.NaNGuard())
    rows = []
    if state and (path / "history.csv").is_file():
        done = state["epochs_done"]
        rows = [r for r in read_history_csv(path / "history.csv") if r["epoch"] <= done]
    callbacks.append(cb.HistoryWriter(path / "history.csv", rows=rows))
    es = config.training.early_stopping
    if es.enabled:  # before the Checkpointer, which records whether it stopped the run
        callbacks.append(
            cb.GatedEarlyStopping(
                gate, monitor=es.monitor, patience=es.patience, min_delta=es.min_delta, verbose=1
            )
        )
    callbacks.append(
        cb.Checkpointer(path / "checkpoints", gate, monitor=_monitor(data), callbacks=callbacks)
    )
    if config.output.tensorboard:
        callbacks.extend(_tensorboard_callbacks(config, path, data))
    if not full_output:
        callbacks.append(progress.EpochLine(config.training.epochs, log=log))
    callbacks.append(cb.StopOnSignal())  # last: a completed epoch is saved and printed first
    if state is not None:
        cb.restore_states(callbacks, state)
    return callbacks


def _monitor(data) -> str:
    return "val_loss" if data.num_val > 0 else "loss"


def _train_dataset(config, data, callbacks, path, log, start_batch):
    """The training dataset: images, or images paired with a k-NN neighbour (refreshed
    from the encoder's features by a callback put first in `callbacks`).

    One pass after another without end, read `_steps_per_epoch` batches an
    epoch: each batch is a function of the seed and its place in the run
    alone, so a resumed run (`start_batch`) reads what an uninterrupted one
    reads, on either pipeline.
    """
    if config.data.neighbors == 0:
        return data.train_dataset(
            seed=config.seed,
            repeat=True,
            start_batch=start_batch,
            drop_remainder=config.data.drop_remainder,
        )
    t_nbr = time.perf_counter()
    space = config.data.neighbor_space
    neighbors = input_neighbors(data.train_images, config.data.neighbors, space=space)
    if config.data.neighbor_mutual:
        neighbors = mutual_neighbors(neighbors)
    log(
        f"neighbour pairs: k={config.data.neighbors}"
        f"{' mutual' if config.data.neighbor_mutual else ''} in {SPACE_NAMES[space]} space "
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
                graph=config.data.neighbor_refresh_graph,
                space=space,
                log=log,
            ),
        )
        neighbors = table
    return neighbor_dataset(
        data.train_images,
        neighbors,
        config.data.batch_size,
        seed=config.seed,
        pipeline=config.data.pipeline,
        repeat=True,
        start_batch=start_batch,
        shard=data.shard,
        drop_remainder=config.data.drop_remainder,
    )


# After the head selection only the first channel head trains; Keras (TensorFlow)
# then warns on every run that the other candidate heads get no gradient. That
# one warning, for those heads' variables only, is expected and hidden.
UNUSED_HEADS_WARNING = (
    r"Gradients do not exist for variables "
    r"\[('[^']*/channel_logits_[1-9][0-9]*/(kernel|bias)'(, )?)+\] when minimizing"
)


def _train(config, model, train_ds, data, callbacks, state, path, verbose, full_output) -> float:
    """`model.fit` from the resumed epoch; returns its wall seconds."""
    t0 = time.perf_counter()
    try:
        with interrupts.deferred(), warnings.catch_warnings():
            # Ctrl-C, SIGTERM: raised by StopOnSignal between batches
            warnings.filterwarnings("ignore", message=UNUSED_HEADS_WARNING)
            model.fit(
                train_ds,
                validation_data=_validation_data(config, data),
                validation_freq=validation_epochs(config.training),
                epochs=config.training.epochs,
                initial_epoch=state["epochs_done"] if state else 0,
                steps_per_epoch=_steps_per_epoch(config, data),
                callbacks=callbacks,
                verbose=verbose if full_output else 0,
                shuffle=False,  # the input pipeline shuffles with the config seed
            )
    except Exception as e:  # out of memory is the one failure users must act on
        if _is_oom(e):
            raise TrainingError(
                f"out of memory while training (batch {config.data.batch_size}, "
                f"{config.model.num_channels} channels): lower data.batch_size; "
                f"the last completed epoch is in {path / 'checkpoints'}"
            ) from None
        raise
    wall = time.perf_counter() - t0
    guard = next(c for c in callbacks if isinstance(c, cb.NaNGuard))
    if guard.failure:
        raise TrainingError(resume_lib.nan_failure_message(guard.failure, path, config))
    return wall


def _finish(config, model, data, callbacks, wall, path, log) -> RunResult:
    """Writes `metrics.json` and the final model files."""
    history = next(c for c in callbacks if isinstance(c, cb.HistoryWriter))
    checkpointer = next(c for c in callbacks if isinstance(c, cb.Checkpointer))
    metrics = summarize_history(history.rows, checkpointer.monitor)
    metrics["fit_wall_seconds_this_session"] = wall
    curriculum = checkpointer.gate.curriculum
    if curriculum is not None:
        metrics["unlock_events"] = curriculum.events
    selection = next((c for c in callbacks if isinstance(c, HeadSelection)), None)
    if selection is not None and selection.events:
        metrics["head_selection"] = selection.events[0]
    pruning = checkpointer.gate.pruning
    if pruning is not None:
        metrics["pruning_events"] = pruning.events
        metrics["kept_channels"] = len(model.active_channels)
        log(
            f"channel pruning: kept {len(model.active_channels)} of {model.num_channels} channels "
            f"({', '.join(str(c) for c in model.active_channels)})"
        )
    metrics["generation"] = end_of_run_generation(model, data, config.data.train_split)
    if "skipped" not in metrics["generation"]:
        g = metrics["generation"]
        log(
            f"generation (final model, {config.data.val_split}): sample consistency "
            f"{g['sample_consistency']:.3f}, recon consistency {g['recon_consistency']:.3f} "
            f"(judge {g['judge_accuracy']:.3f})"
        )
    atomic_write_text(path / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    described = describe_training_data(config.data)
    save_model_atomic(model, path / "model.keras", training_data=described)
    saved = _saved_model_path(config)
    save_model_atomic(model, saved, training_data=described)
    if config.output.report:
        _write_report(path, model, data, config, log)
    log(f"run folder: {path}")
    log(f"saved model: {saved}")
    return RunResult(
        run_dir=path, model=model, history=history.rows, metrics=metrics, saved_model=saved
    )


def _write_report(path: Path, model, data, config, log) -> None:
    """Writes the run's `report.html`; a failure is reported, never fatal to the run."""
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
    tb_dir = path / "tensorboard"
    callbacks = [epoch_scalars_callback(tb_dir)]
    images = data.val_images if data.num_val > 0 else data.train_images
    labels = data.val_labels if data.num_val > 0 else data.train_labels
    images = as_float_images(images[: max(16, config.output.projector_samples)])
    labels = None if labels is None else labels[: len(images)]

    def write_images(model, epoch):
        write_image_summaries(model, images[:16], str(tb_dir / "images"), epoch)

    callbacks.append(
        cb.PeriodicCallback(write_images, config.output.image_every, config.training.epochs)
    )
    if config.output.projector and labels is not None:

        def write_projector(model, epoch):
            if epoch != config.training.epochs:
                return
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
