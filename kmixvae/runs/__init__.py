"""Run folders and model files: layout and marker, claiming and checking a run folder, model
files (safe load, atomic save with their training-data description), the history CSV, the
data a command reads from its flags, and how a run stops on Ctrl-C or SIGTERM.

Example:

```python
from kmixvae.runs import check_run_dir, load_model_file, model_and_data
model = load_model_file(check_run_dir("runs/film_het__20261126_090000"))
```
"""

from kmixvae.runs.command_data import (
    data_config,
    detect_source,
    folder_data,
    load_judge,
    model_and_data,
)
from kmixvae.runs.folder import (
    MODEL_CANDIDATES,
    RUN_MARKER,
    check_run_dir,
    check_writable,
    claim_run_dir,
    release_run_dir,
)
from kmixvae.runs.history import history_columns, read_history_csv, rows_to_csv
from kmixvae.runs.interrupts import Interrupted, signals_as_interrupt
from kmixvae.runs.model_files import (
    TRAINING_DATA_ENTRY,
    describe_training_data,
    load_model_file,
    read_training_data,
    save_for_inference,
    save_model_atomic,
)

__all__ = [
    "MODEL_CANDIDATES",
    "RUN_MARKER",
    "TRAINING_DATA_ENTRY",
    "Interrupted",
    "check_run_dir",
    "check_writable",
    "claim_run_dir",
    "data_config",
    "describe_training_data",
    "detect_source",
    "folder_data",
    "history_columns",
    "load_judge",
    "load_model_file",
    "model_and_data",
    "read_history_csv",
    "read_training_data",
    "release_run_dir",
    "rows_to_csv",
    "save_for_inference",
    "save_model_atomic",
    "signals_as_interrupt",
]
