"""XLA:CPU runs kmixvae's convolutions with its Eigen kernels, not YNNPACK's.

jaxlib 0.10 hands convolutions, matrix products and reductions on the CPU to
YNNPACK (`--xla_cpu_experimental_ynn_fusion_type`, whose default is
`individual_dot,individual_convolution,reduce`). On the small convolutions
of kmixvae's encoder and decoder YNNPACK is the slow path: a 3x3 stride-2
convolution's kernel gradient over 384 images of 14x14x32 took 16 ms with it
and 5 ms with XLA's own (Eigen) convolution, its forward pass 4.6 ms and 2.0
ms (2-core Intel Xeon, `docs/performance.md`), and the whole `film_het`
training step 1.4x longer. So kmixvae keeps YNNPACK for the products and
reductions and gives it no convolution:
`--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce`.

`prefer_eigen_convolutions()` adds that flag to `XLA_FLAGS`. `import kmixvae`
calls it, so it applies when kmixvae is imported before JAX first runs
anything (the CLI and the apps always are; XLA reads `XLA_FLAGS` once, when
its CPU client starts). It changes nothing:

- when `XLA_FLAGS` already sets `--xla_cpu_experimental_ynn_fusion_type`
  (the user's value is kept as given);
- when `KMIXVAE_XLA_CPU_CONVOLUTIONS=ynn` (jaxlib's default) or holds a
  value that is neither `eigen` nor `ynn` (the CLI then stops with one
  `error:` line: `convolution_switch()`);
- with a jaxlib other than the 0.10 series it was measured on (a flag XLA
  does not know would stop JAX from starting);
- with several CPU devices in one process
  (`--xla_force_host_platform_device_count` above 1, as the distribution
  tests simulate them): the devices share one thread pool, and with Eigen's
  convolutions a 2-device all-reduce once waited past XLA's 40 s
  rendezvous limit in the test suite ("only 1 of them arrived"), where
  YNNPACK's (its own threads) had passed every run before;
- on GPUs and TPUs the flag is read by no one (it is XLA:CPU's).

Example:

```python
import os
from kmixvae.utils.xla_cpu_flags import prefer_eigen_convolutions

prefer_eigen_convolutions()
os.environ["XLA_FLAGS"]  # '... --xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce'
```
"""

from __future__ import annotations

import os
import re
from importlib import metadata

from kmixvae.errors import ConfigError

SWITCH = "KMIXVAE_XLA_CPU_CONVOLUTIONS"
FLAG = "--xla_cpu_experimental_ynn_fusion_type"
VALUE = "individual_dot,reduce"
MEASURED_JAXLIB = "0.10."
_HOST_DEVICES = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def _jaxlib_version() -> str | None:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def convolution_switch(environ=None) -> str:
    """`KMIXVAE_XLA_CPU_CONVOLUTIONS`: `eigen` (the default) or `ynn`.

    Raises:
        ConfigError: any other value.
    """
    env = os.environ if environ is None else environ
    switch = env.get(SWITCH, "eigen").strip().lower() or "eigen"
    if switch not in ("eigen", "ynn"):
        raise ConfigError(f"{SWITCH}: expected eigen or ynn, got {switch!r}")
    return switch


def prefer_eigen_convolutions(environ=None) -> bool:
    """Adds `--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce` to `XLA_FLAGS`.

    Never raises (`import kmixvae` calls it); an unknown switch value adds
    nothing, and `convolution_switch()` reports it.

    Args:
        environ: the environment to change (default `os.environ`).

    Returns:
        Whether the flag was added (False: already set by the user, switched
        off with `KMIXVAE_XLA_CPU_CONVOLUTIONS=ynn` or an unknown value,
        another jaxlib, or several CPU devices in the process).
    """
    env = os.environ if environ is None else environ
    try:
        switch = convolution_switch(env)
    except ConfigError:
        return False
    flags = env.get("XLA_FLAGS", "")
    version = _jaxlib_version()
    host_devices = max((int(n) for n in _HOST_DEVICES.findall(flags)), default=1)
    if (
        switch == "ynn"
        or FLAG in flags
        or host_devices > 1
        or version is None
        or not version.startswith(MEASURED_JAXLIB)
    ):
        return False
    env["XLA_FLAGS"] = f"{flags} {FLAG}={VALUE}".strip()
    return True
