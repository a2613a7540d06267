"""How config sections declare their keys: defaults, allowed values, and the switch that uses them.

A config section is a dataclass whose fields are made with `option` (a
default with its choices, range and doc) or `section` (a nested section).
A key whose value only matters while another key is on names that key with
a `Switch`: on a field (`option(..., switch=only_when("head", "gaussian"))`)
or for every key of a section (a `SWITCH` class attribute). Validation then
rejects, by name, any such key set away from its default while its switch
is off, for every section alike.

Example:

```python
@dataclass
class EarlyStoppingConfig:
    SWITCH: ClassVar[Switch] = only_when("enabled", True)
    enabled: bool = option(False)
    patience: int = option(5, lo=1)
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Switch:
    """The key that turns other keys on.

    Args:
        key: a key of the same section, or a dotted path from the config
            root when it starts with "/" (e.g. "/loss").
        is_on: called with the key's value; True when the switched keys are used.
        when: how a reader says "on", for messages (e.g. "'plateau'"); with
            `state`, the whole condition (e.g. "an objective ... is on").
        state: optional; called with the key's value, says what it is now
            (default: "<key> is <value>").
    """

    key: str
    is_on: Callable[[Any], bool]
    when: str
    state: Callable[[Any], str] | None = None

    def condition(self, path: str) -> str:
        """When the switched keys are used, e.g. "model.decoder.head is 'gaussian'"."""
        return self.when if self.state is not None else f"{path} is {self.when}"

    def describe(self, path: str, value) -> str:
        """What the switch is now, e.g. "model.decoder.head is 'bernoulli'"."""
        return self.state(value) if self.state is not None else f"{path} is {value!r}"


def only_when(key: str, *values) -> Switch:
    """A switch that is on while `key` holds one of `values`."""
    return Switch(
        key=key,
        is_on=lambda v: v in values,
        when=" or ".join(repr(v) for v in values),
    )


def only_unless(key: str, value) -> Switch:
    """A switch that is on while `key` holds anything but `value` (e.g. a weight of 0)."""
    return Switch(key=key, is_on=lambda v: v != value, when=f"not {value!r}")


def option(
    default: Any = None,
    *,
    choices: tuple | None = None,
    lo=None,
    hi=None,
    doc: str = "",
    switch: Switch | None = None,
):
    """A config key: its default, allowed choices and range, doc, and the switch that uses it."""
    meta = {"choices": choices, "min": lo, "max": hi, "doc": doc, "switch": switch}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls, *, factory: Callable[[], type] | None = None):
    """A nested section; `factory` returns its class when it is assembled at run time."""
    if factory is not None:
        return field(default_factory=lambda: factory()(), metadata={"section_class": factory})
    return field(default_factory=cls, metadata={})


def setting_names(settings_class) -> list[str]:
    """The keys a settings dataclass declares, in order."""
    return [f.name for f in dataclasses.fields(settings_class)]


@dataclass
class NoSettings:
    """The settings of a part that has none of its own."""


def with_switch(f: dataclasses.Field, switch: Switch) -> dataclasses.Field:
    """A copy of the `option` field `f` used only while `switch` is on."""
    return field(
        default=f.default,
        default_factory=f.default_factory,
        metadata={**f.metadata, "switch": switch},
    )


def section_class(f: dataclasses.Field, hinted):
    """The class of a section field (assembled ones are looked up now)."""
    factory = f.metadata.get("section_class")
    return factory() if factory is not None else hinted
