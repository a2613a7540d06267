"""kmixvae: mixture-of-VAEs with decentralized latents on Keras 3.

`kmixvae.load_preset(name)` loads a shipped model by name; `kmixvae.list_presets()`
lists them with a one-line description each.
"""

from kmixvae.utils.xla_cpu_flags import prefer_eigen_convolutions

__version__ = "0.1.0"

# Before JAX starts its CPU client (kmixvae.utils.xla_cpu_flags says why and how to turn it off).
prefer_eigen_convolutions()


def load_preset(name: str):
    """Loads the shipped preset `name` (see `kmixvae.presets.load_preset`)."""
    from kmixvae.presets import load_preset as _load

    return _load(name)


def list_presets() -> dict:
    """The shipped presets, name -> one-line description (see `kmixvae.presets`)."""
    from kmixvae.presets import list_presets as _list

    return _list()
