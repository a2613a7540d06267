"""TensorBoard event files without TensorFlow: scalars and images via the `tensorboard` package.

`tensorboard` ships a pure-Python event-file writer
(`tensorboard.summary.writer.event_file_writer.EventFileWriter`) and the
`Summary` protos; scalars are written as `simple_value`s and images as
PNG-encoded `Summary.Image`s, both of which TensorBoard reads into its
scalar and image dashboards. Where TensorFlow is installed, kmixvae keeps
using `tf.summary` and `keras.callbacks.TensorBoard`; this module is the path
where it is not (e.g. the JAX backend alone).

Example:

```python
with EventWriter("runs/r1/tensorboard/eval") as writer:
    writer.scalar("eval/nelbo", 91.2, step=3)
    writer.image("samples", grid, step=3)  # (H, W) or (H, W, C) in [0, 1]
```
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import keras
import numpy as np


class EventWriter:
    """Appends scalar and image summaries to a new event file in `log_dir`.

    Args:
        log_dir: folder of the event file (created if missing).
    """

    def __init__(self, log_dir: str | Path):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(log_dir))

    def _add(self, value, step: int) -> None:
        from tensorboard.compat.proto import summary_pb2

        self.add_summary(summary_pb2.Summary(value=[value]), step)

    def add_summary(self, summary, step: int) -> None:
        """Writes a whole `Summary` proto (e.g. an hparams summary) at `step`."""
        from tensorboard.compat.proto import event_pb2

        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer.add_event(event)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Writes one scalar `value` under `tag` at `step`."""
        from tensorboard.compat.proto import summary_pb2

        self._add(summary_pb2.Summary.Value(tag=str(tag), simple_value=float(value)), step)

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """Writes one `(H, W)` or `(H, W, 1|3)` image (floats in [0, 1] or uint8) as PNG."""
        from PIL import Image
        from tensorboard.compat.proto import summary_pb2

        picture = np.asarray(picture)
        if picture.dtype != np.uint8:
            picture = (np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if picture.ndim == 3 and picture.shape[-1] == 1:
            picture = picture[..., 0]
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="PNG")
        height, width = picture.shape[:2]
        channels = 1 if picture.ndim == 2 else picture.shape[-1]
        encoded = summary_pb2.Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=buf.getvalue()
        )
        self._add(summary_pb2.Summary.Value(tag=str(tag), image=encoded), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EpochScalars(keras.callbacks.Callback):
    """Writes every epoch's logs as TensorBoard scalars, laid out as `keras.callbacks.TensorBoard` does.

    `loss` goes to `<log_dir>/train` as `epoch_loss`, `val_loss` to
    `<log_dir>/validation` as `epoch_loss`; steps are epochs.

    Args:
        log_dir: the run's TensorBoard folder.
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, EventWriter] = {}

    def _writer(self, name: str) -> EventWriter:
        if name not in self._writers:
            self._writers[name] = EventWriter(self.log_dir / name)
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            try:
                number = float(keras.ops.convert_to_numpy(value))
            except (TypeError, ValueError):
                continue
            if key.startswith("val_"):
                self._writer("validation").scalar("epoch_" + key[4:], number, epoch)
            else:
                self._writer("train").scalar("epoch_" + key, number, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def epoch_scalars_callback(log_dir: str | Path) -> keras.callbacks.Callback:
    """`keras.callbacks.TensorBoard` where TensorFlow is installed, else `EpochScalars`."""
    from kmixvae.data.pipeline import tensorflow_available

    if tensorflow_available():
        return keras.callbacks.TensorBoard(
            log_dir=str(log_dir), write_graph=False, update_freq="epoch"
        )
    return EpochScalars(log_dir)
