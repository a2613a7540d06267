"""Learning-rate schedule with a warm restart: one cosine (or constant) phase per optimizer state."""

from __future__ import annotations

import math

import keras
from keras import ops

from kmixvae.utils.keras_adapter import learning_rate_schedule


@keras.saving.register_keras_serializable(package="kmixvae")
class PhasedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate made of phases, each a cosine (or constant) over its own steps.

    The step is the optimizer's iteration count, which `OptimizerRestart`
    resets to 0 when it starts the next phase (together with the moments), so
    each phase behaves like a freshly built optimizer. Which phase is on is
    an optimizer variable once `attach_phase_variable` has given it one
    (`kmixvae.training.optimizers.prepare_optimizer` does, for every run):
    the compiled step computes each phase's rate and picks by it, so moving
    to the next phase compiles nothing. Without it, `phase` is a Python
    value read when the step is traced (a retrace moves it).

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
        self.phase_variable = None

    def _rate(self, phase: int, step):
        initial, final, steps = self.phases[min(phase, len(self.phases) - 1)]
        if not self.cosine:
            return ops.convert_to_tensor(initial, "float32")
        t = ops.minimum(ops.cast(step, "float32") / float(max(1, steps)), 1.0)
        return final + (initial - final) * 0.5 * (1.0 + ops.cos(math.pi * t))

    def __call__(self, step):
        if self.phase_variable is None:
            return self._rate(self.phase, step)
        rate = self._rate(0, step)
        current = ops.cast(self.phase_variable, "float32")
        for phase in range(1, len(self.phases)):
            rate = ops.where(current >= phase - 0.5, self._rate(phase, step), rate)
        return rate

    def set_phase(self, phase: int) -> None:
        """Moves to `phase`: the Python value and, when attached, the variable."""
        self.phase = int(phase)
        if self.phase_variable is not None:
            self.phase_variable.assign(float(self.phase))

    def get_config(self):
        return {"phases": self.phases, "cosine": self.cosine, "phase": self.phase}


def attach_phase_variable(optimizer) -> None:
    """Gives a built optimizer's `PhasedLearningRate` its phase as an optimizer variable.

    The variable (`learning_rate_phase`, float32, after every other
    optimizer variable) is saved and restored with the optimizer and is
    part of the state the compiled step reads, so `OptimizerRestart` moves
    to the next phase by assigning it. Does nothing without a phased
    schedule or when the variable is there already.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = learning_rate_schedule(inner)
    if not isinstance(schedule, PhasedLearningRate) or schedule.phase_variable is not None:
        return
    schedule.phase_variable = inner.add_variable(
        shape=(),
        initializer=keras.initializers.Constant(float(schedule.phase)),
        dtype="float32",
        name="learning_rate_phase",
    )
