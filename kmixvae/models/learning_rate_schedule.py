"""Learning-rate schedule with a warm restart: one cosine (or constant) phase per optimizer state."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmixvae")
class PhasedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate made of phases, each a cosine (or constant) over its own steps.

    The step is the optimizer's iteration count, which `OptimizerRestart`
    resets to 0 when it starts the next phase (together with the moments), so
    each phase behaves like a freshly built optimizer. `phase` is a Python
    value read when the train step is traced; the callback retraces the step
    when it changes it.

    Args:
        phases: list of `[initial_lr, final_lr, steps]`, one per phase.
        cosine: bool. Cosine from `initial_lr` to `final_lr` over `steps`
            (then flat); if False, `initial_lr` throughout the phase.
        phase: int. The current phase.

    Example:
    ```python
    lr = PhasedLearningRate([[3e-3, 1e-4, 310], [1e-3, 1e-4, 155]])
    optimizer = keras.optimizers.Adam(lr)
    ```
    """

    def __init__(self, phases, cosine=True, phase=0):
        self.phases = [[float(a), float(b), int(n)] for a, b, n in phases]
        self.cosine = bool(cosine)
        self.phase = int(phase)

    def __call__(self, step):
        initial, final, steps = self.phases[min(self.phase, len(self.phases) - 1)]
        if not self.cosine:
            return ops.convert_to_tensor(initial, "float32")
        t = ops.minimum(ops.cast(step, "float32") / float(max(1, steps)), 1.0)
        return final + (initial - final) * 0.5 * (1.0 + ops.cos(math.pi * t))

    def get_config(self):
        return {"phases": self.phases, "cosine": self.cosine, "phase": self.phase}
