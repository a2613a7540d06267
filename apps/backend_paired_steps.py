"""Do TensorFlow and JAX take the same training steps? The first phase from shared weights.

The head screen's first phase (`apps/head_selection_rule.py`: a film_het
trunk with ten channel heads, SCAN neighbour agreement, usage entropy, view
consistency) trained for a few epochs from the same initial weights on the
same batches in the same order, with the views' random draws switched off
(rotation and shift 0: a view is its image), so that nothing random is
left. Run it with TensorFlow first: it writes the initial weights and its
per-step losses to `--out`; then with JAX: it loads those weights, trains,
and prints the two loss curves side by side and the largest difference of
the final weights. Equal curves say the two backends compute the same
steps, so a difference between their seed studies is the draws (weights'
initialisation, augmentation, shuffling), not the arithmetic.

    KERAS_BACKEND=tensorflow python apps/backend_paired_steps.py --out DIR
    KERAS_BACKEND=jax python apps/backend_paired_steps.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np

from kmixvae.data.neighbors import mutual_neighbors, pixel_neighbors
from kmixvae.data.sources import load_split
from kmixvae.errors import DataError
from kmixvae.objectives.views import ViewAugmentation
from kmixvae.runs import folder_data
from kmixvae.utils.images import as_float_images

APPS_DIR = str(Path(__file__).resolve().parent)
if APPS_DIR not in sys.path:  # loaded from a file, not run as a script: find the head screen
    sys.path.append(APPS_DIR)
from head_selection_rule import HeadsModel  # noqa: E402


def paired_steps(
    x, weights: Path, write: bool, epochs: int = 3, batch: int = 256, seed: int = 0
) -> dict:
    """Trains the screen's model on `x` and returns this backend's record.

    Args:
        x: `(N, H, W, 1)` float images in [0, 1].
        weights: the initial weights' file (`.weights.h5`).
        write: True: the model's own initial weights are written there;
            False: they are read from there.
        epochs, batch, seed: the training run (the neighbour picks depend on
            `seed` only).

    Returns:
        dict: `backend`, `losses` (one per step), `weights` (the final
        trainable weights, flat `np.ndarray`).
    """
    backend = keras.backend.backend()
    keras.utils.set_random_seed(seed)
    neighbours = mutual_neighbors(pixel_neighbors(x, 20))
    rng = np.random.default_rng(seed)
    pick = neighbours[np.arange(len(x)), rng.integers(0, neighbours.shape[1], len(x))]
    pairs = np.concatenate([x, x[pick]], -1)
    model = HeadsModel(10, seed, consistency=1.0)
    model.aug = ViewAugmentation(0.0, 0.0)  # no random draws: a view is its image
    model(pairs[:2])
    if write:
        model.save_weights(weights)
    else:
        model.load_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    losses = []

    class _Losses(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            losses.append(float(logs["loss"]))

    model.fit(
        pairs, epochs=epochs, batch_size=batch, shuffle=False, verbose=0, callbacks=[_Losses()]
    )
    flat = np.concatenate(
        [keras.ops.convert_to_numpy(v).ravel() for v in model.trainable_variables]
    )
    return {"backend": backend, "losses": losses, "weights": flat}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/fashion-mnist-train")
    parser.add_argument("--split", default="train[:2048]", help="the images of --data-dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", required=True, help="folder shared by the two runs")
    args = parser.parse_args(argv)
    try:
        images, _ = load_split(folder_data(args.data_dir), args.split)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x = as_float_images(images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if keras.backend.backend() != "tensorflow" and not (out / "initial.weights.h5").exists():
        print(
            f"error: run with KERAS_BACKEND=tensorflow first (no {out}/initial.weights.h5)",
            file=sys.stderr,
        )
        return 2
    first = keras.backend.backend() == "tensorflow"
    record = paired_steps(x, out / "initial.weights.h5", first, epochs=args.epochs)
    np.save(out / f"weights_{record['backend']}.npy", record["weights"])
    (out / f"losses_{record['backend']}.json").write_text(json.dumps(record["losses"]))
    print(
        f"{record['backend']}: {len(record['losses'])} steps, last loss {record['losses'][-1]:.6f}"
    )
    if record["backend"] == "tensorflow":
        return 0
    other = json.loads((out / "losses_tensorflow.json").read_text())
    print("step | tensorflow | " + record["backend"] + " | difference")
    for step in sorted({0, 1, 2, len(other) // 2, len(other) - 1}):
        a, b = other[step], record["losses"][step]
        print(f"{step} | {a:.6f} | {b:.6f} | {b - a:+.2e}")
    tf_weights = np.load(out / "weights_tensorflow.npy")
    diff = np.abs(record["weights"] - tf_weights).max()
    print(
        f"final weights: largest difference {diff:.3g} (largest weight {np.abs(tf_weights).max():.3g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
