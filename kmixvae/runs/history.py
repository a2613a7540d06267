"""A run's `history.csv`: one row an epoch (`epoch` from 1), one column a logged value.

`HistoryWriter` (`kmixvae.training.callbacks`) writes it after every epoch
with `rows_to_csv`; `read_history_csv` reads it back for a resumed run,
`visualize`, `compare` and the studies.

Example:

```python
rows = read_history_csv("runs/film_het__20261126_090000/history.csv")
history_columns(rows)["val_cluster_acc"]   # one value per epoch
```
"""

from __future__ import annotations

import csv
import io
from pathlib import Path


def rows_to_csv(rows) -> str:
    """The CSV text of history rows (every key of any row a column, in order of first use)."""
    keys = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def read_history_csv(path: str | Path) -> list[dict]:
    """Reads a `history.csv` back as a list of rows of floats, `epoch` an int.

    `epoch` stays an int so that a resumed run's `HistoryWriter` writes the
    earlier rows' epochs as `HistoryWriter` first wrote them (`1`, not `1.0`).
    """
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: int(float(v)) if k == "epoch" else float(v) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def history_columns(rows: list[dict]) -> dict[str, list[float]] | None:
    """History rows as columns, key -> one value per row (NaN where a row lacks it); None if empty."""
    if not rows:
        return None
    return {k: [r.get(k, float("nan")) for r in rows] for k in rows[0]}


__all__ = ["history_columns", "read_history_csv", "rows_to_csv"]
