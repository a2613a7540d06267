"""TFDS-style split specs (`train`, `test[:80%]`, `train[1000:2000]`) for every source.

The grammar and the rounding follow `tfds.core.ReadInstruction` (rounding
"closest"): a percent boundary `p` on a split of `n` examples becomes
`int(round(p * n / 100))` (Python rounding, half to even), negative boundaries
count from the end, and several specs can be joined with `+`. So `test[:80%]`
and `test[80%:]` always partition `test`, whatever its size, and slice a local
IDX/NPZ file exactly as TFDS would slice the same split.

Two differences, both rejected with a clear `DataError` rather than guessed:
shard slicing (`train[:2shard]`) and mixed units in one slice
(`train[10:50%]`, which TFDS silently reads as `[10%:50%]`).

Example:

```python
parse_split("test[80%:]")
# (SplitSlice(name='test', start=80.0, stop=None, unit='%'),)
resolve_split("test[:80%]", {"test": 10000})
# [('test', 0, 8000)]
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union

from kmixvae.errors import DataError

_SUB_SPEC_RE = re.compile(r"^(?P<name>[\w-]+)(\[(?P<selector>[\d\w%:.-]+)\])?$")
_BOUND_RE = re.compile(r"^((?P<val>-?[\d_.]+)(?P<unit>%|shard)?)?$")
_ADD_RE = re.compile(r"\s*\+\s*")
_FORMAT = "expected e.g. train, test[:80%], train[1000:2000] or test[-10%:]"


@dataclass(frozen=True)
class SplitSlice:
    """One `name[start:stop]` term of a split spec, not yet made absolute.

    Args:
        name: split name, e.g. `"train"`.
        start: first boundary (`None` = from the beginning); a percent in
            [-100, 100] when `unit == "%"`, else an example index.
        stop: end boundary (`None` = to the end), same unit as `start`.
        unit: `"%"` or `"abs"`.
    """

    name: str
    start: Optional[Union[int, float]] = None
    stop: Optional[Union[int, float]] = None
    unit: str = "abs"

    def resolve(self, num_examples: int, *, spec: str = "") -> tuple[int, int]:
        """Absolute `[start, stop)` indices for a split of `num_examples`.

        Args:
            num_examples: size of the split.
            spec: the full spec, only used in error messages.

        Returns:
            `(start, stop)` with `0 <= start` and `stop <= num_examples`;
            `start >= stop` means an empty selection.
        """
        n = num_examples
        if self.unit == "%":
            start = 0 if self.start is None else int(round(self.start * n / 100.0))
            stop = n if self.stop is None else int(round(self.stop * n / 100.0))
        else:
            start = 0 if self.start is None else int(self.start)
            stop = n if self.stop is None else int(self.stop)
        if abs(start) > n or abs(stop) > n:
            raise DataError(
                f"split {spec or self.name!r}: slice [{start}:{stop}] is out of range for "
                f"split {self.name!r} with {n} examples"
            )
        if start < 0:
            start += n
        if stop < 0:
            stop += n
        return start, stop


def _parse_bound(text: str, spec: str) -> tuple[Optional[str], Optional[str]]:
    match = _BOUND_RE.match(text)
    if match is None:
        raise DataError(f"split {spec!r}: bad slice boundary {text!r} ({_FORMAT})")
    return match.group("val"), match.group("unit")


def _parse_term(term: str, spec: str) -> SplitSlice:
    match = _SUB_SPEC_RE.match(term)
    if match is None:
        raise DataError(f"split {spec!r}: unrecognised format {term!r} ({_FORMAT})")
    name, selector = match.group("name"), match.group("selector")
    if selector is None:
        return SplitSlice(name)
    if name == "all":
        raise DataError(f"split {spec!r}: 'all' cannot be sliced; slice each split and join with +")
    parts = selector.split(":")
    if len(parts) != 2:
        raise DataError(
            f"split {spec!r}: {term!r} is not a slice [start:stop] (single indices are not "
            f"supported; {_FORMAT})"
        )
    (v0, u0), (v1, u1) = (_parse_bound(p, spec) for p in parts)
    if v0 is None and v1 is None:
        raise DataError(f"split {spec!r}: empty slice in {term!r} ({_FORMAT})")
    if "shard" in (u0, u1):
        raise DataError(f"split {spec!r}: shard slicing is not supported; use % or indices")
    if v0 is not None and v1 is not None and u0 != u1:
        raise DataError(
            f"split {spec!r}: mixed units in {term!r}; use percents on both sides or "
            "indices on both sides"
        )
    unit = "%" if "%" in (u0, u1) else "abs"
    try:
        conv = float if unit == "%" else int
        start = None if v0 is None else conv(v0)
        stop = None if v1 is None else conv(v1)
    except ValueError:
        kind = "percent" if unit == "%" else "integer index"
        raise DataError(f"split {spec!r}: {term!r} has a bad {kind}") from None
    if unit == "%" and any(v is not None and abs(v) > 100 for v in (start, stop)):
        raise DataError(f"split {spec!r}: percent boundaries must lie in [-100%, 100%]")
    return SplitSlice(name, start, stop, unit)


def parse_split(spec: str) -> tuple[SplitSlice, ...]:
    """Parses a TFDS-style split spec.

    Args:
        spec: e.g. `"train"`, `"test[:80%]"`, `"train[1000:2000]"`,
            `"test[-10%:]"` or `"train[:50%]+test"`. `"all"` means every
            split the data has.

    Returns:
        The terms of the spec, in order.

    Raises:
        DataError: the spec is malformed.

    Example:

    ```python
    parse_split("train[:10%]+test")
    # (SplitSlice('train', None, 10.0, '%'), SplitSlice('test'))
    ```
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"split {spec!r}: expected a non-empty split spec ({_FORMAT})")
    terms = _ADD_RE.split(spec.strip())
    return tuple(_parse_term(t, spec) for t in terms)


def _expand(slices: Sequence[SplitSlice], available: Sequence[str]) -> list[SplitSlice]:
    out: list[SplitSlice] = []
    for s in slices:
        if s.name == "all":
            out.extend(SplitSlice(name) for name in available)
        else:
            out.append(s)
    return out


def split_names(spec: str, available: Sequence[str], *, where: str = "the data") -> list[str]:
    """The split names a spec needs, checked against those available.

    Args:
        spec: a split spec (see `parse_split`).
        available: the split names the data has, e.g. `["train", "test"]`.
        where: the folder or file, for the error message.

    Returns:
        The distinct split names to load, in order of first use.

    Raises:
        DataError: the spec is malformed or names a split that is missing.
    """
    names: list[str] = []
    for s in _expand(parse_split(spec), available):
        if s.name not in available:
            found = ", ".join(available) if available else "none"
            raise DataError(
                f"split {spec!r}: no split {s.name!r} in {where} (found splits: {found})"
            )
        if s.name not in names:
            names.append(s.name)
    return names


def resolve_split(
    spec: str, num_examples: Mapping[str, int], *, where: str = "the data"
) -> list[tuple[str, int, int]]:
    """Turns a split spec into absolute `(split, start, stop)` ranges.

    Args:
        spec: a split spec (see `parse_split`).
        num_examples: size of each available split, e.g. `{"test": 10000}`.
        where: the folder or file, for error messages.

    Returns:
        One `(split_name, start, stop)` per term; select with
        `array[start:stop]` and concatenate.

    Raises:
        DataError: the spec is malformed, names a missing split or slices
            out of range.

    Example:

    ```python
    resolve_split("test[80%:]", {"test": 10000})  # [('test', 8000, 10000)]
    ```
    """
    split_names(spec, list(num_examples), where=where)
    return [
        (s.name, *s.resolve(num_examples[s.name], spec=spec))
        for s in _expand(parse_split(spec), list(num_examples))
    ]
