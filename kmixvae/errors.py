"""Errors that kmixvae reports to users as one clear line.

Every problem with user input (config, data files, model files, CLI
arguments) raises a subclass of `KmixvaeError`. The CLI prints its message on
one line and exits with code 2; library users can catch the class.
"""


class KmixvaeError(Exception):
    """Base class for user-facing errors (bad input, not a bug)."""


class ConfigError(KmixvaeError, ValueError):
    """A config value is unknown, of the wrong type, out of range or inconsistent."""


class DataError(KmixvaeError, ValueError):
    """A data source, file or split cannot be used."""


class ModelFileError(KmixvaeError, ValueError):
    """A model file or run folder cannot be loaded."""


class TrainingError(KmixvaeError, RuntimeError):
    """Training stopped for a reason the user must act on (NaN, out of memory)."""


class WriteError(KmixvaeError, OSError):
    """A file or folder cannot be written (read-only disk, disk full, a path under a file, ...).

    Also an `OSError`, so code that tolerates a failed write (a cache) keeps
    catching it as one.
    """
