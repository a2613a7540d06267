"""Makes `import tensorflow` (and everything under it) fail, as where TF is not installed.

Put this folder first on `PYTHONPATH` of a subprocess: Python imports
`sitecustomize` at start-up, and the finder below then answers every import of
`tensorflow`, `tensorflow_datasets` or `tf_keras` (and their submodules) with
`ModuleNotFoundError`, exactly as on a machine without them.
"""

import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets", "tf_keras")


class _BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


sys.meta_path.insert(0, _BlockTensorFlow())
