"""What every configuration dataclass shares: the command-line name of a field, one-line
checks of its value, and the ``Args:`` docs that ``emoneuron --help`` shows.

Configs live in light ``config.py`` modules (no torch, no transformers) so the command line
builds its parser in a fraction of a second; each config checks its own fields in
``__post_init__``, before any model is loaded or file written.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from emoneuron.errors import UserError


def flag(name: str) -> str:
    """The command-line option of a config field.

    >>> flag("top_n")
    '--top-n'
    """
    return "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def at_least(name: str, value: float, smallest: float) -> None:
    """>>> at_least("shots", -1, 0)
    Traceback (most recent call last):
    emoneuron.errors.UserError: --shots -1: must be at least 0
    """
    if not value >= smallest:  # also refuses NaN
        raise UserError(f"{flag(name)} {_shown(value)}: must be at least {smallest}")


def finite(name: str, values: Iterable[float]) -> None:
    """A UserError naming the option unless every value is a finite number."""
    values = tuple(values)
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise UserError(f"{flag(name)} {_shown(values)}: {bad[0]} is not a finite number")


def check_fraction(name: str, value: float) -> None:
    """>>> check_fraction("eval_fraction", 1.5)
    Traceback (most recent call last):
    emoneuron.errors.UserError: --eval-fraction 1.5: must be between 0 and 1, e.g. 0.4
    """
    if not 0 < value < 1:
        raise UserError(f"{flag(name)} {value}: must be between 0 and 1, e.g. 0.4")


def distinct(name: str, values: tuple[Any, ...]) -> None:
    if len(set(values)) != len(values):
        raise UserError(f"{flag(name)} {_shown(values)}: give each value once")


def choices(hint: Any) -> tuple[str, ...]:
    """The values a ``Literal`` (or a tuple of one) allows; () for any other type.

    >>> choices(typing.Literal["zero", "mean"])
    ('zero', 'mean')
    """
    if typing.get_origin(hint) is tuple:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is typing.Literal:
        return tuple(typing.get_args(hint))
    return ()


def check_choices(config: Any) -> None:
    """A UserError naming the option for the first ``Literal`` field of the dataclass
    ``config`` holding a value its type does not allow."""
    hints = typing.get_type_hints(type(config))
    for spec in dataclasses.fields(config):
        allowed = choices(hints[spec.name])
        value = getattr(config, spec.name)
        values = value if isinstance(value, tuple) else (value,)
        if allowed and any(v not in allowed for v in values):
            raise UserError(f"{flag(spec.name)} {_shown(value)}: use "
                            f"{'some' if isinstance(value, tuple) else 'one'} of "
                            f"{', '.join(allowed)}")


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Each field's line in the ``Args:`` section of ``cls``'s docstring (continuation lines
    joined), by field name."""
    docs: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), len(lines))
    name = ""
    indent = None
    for line in lines[start + 1:]:
        if not line.strip():
            break
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        head, colon, text = line.strip().partition(": ")
        if depth == indent and colon:
            name = head
            docs[name] = text.strip()
        elif name:
            docs[name] += " " + line.strip()
    return docs


def flat_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's nested ``config`` as one mapping of field names (names are unique across
    the nested configs: each is one command-line option).

    >>> flat_settings({"seed": 0, "design": {"mode": "zero"}})
    {'seed': 0, 'mode': 'zero'}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flat_settings(value) if isinstance(value, Mapping) else {key: value})
    return flat


def leaf_fields(cls: type[Any]) -> list[tuple[type[Any], dataclasses.Field[Any]]]:
    """Every field of the dataclass ``cls`` that is not itself a dataclass, with the class
    that declares it, depth first: the options of a nested config."""
    hints = typing.get_type_hints(cls)
    leaves: list[tuple[type[Any], dataclasses.Field[Any]]] = []
    for spec in dataclasses.fields(cls):
        hint = hints[spec.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            leaves += leaf_fields(hint)
        else:
            leaves.append((cls, spec))
    return leaves


def nested(cls: type[Any], flat: Mapping[str, Any]) -> Any:
    """The dataclass ``cls`` from field values by name, its nested configs built from the same
    mapping; an absent field keeps its default.

    >>> from emoneuron.recording.config import RecordConfig
    >>> nested(RecordConfig, {"top_k": 3}).top_k
    3
    """
    unknown = set(flat) - {spec.name for _, spec in leaf_fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no option {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for spec in dataclasses.fields(cls):
        hint = hints[spec.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[spec.name] = nested(hint, {name: value for name, value in flat.items()
                                              if name in {s.name for _, s in leaf_fields(hint)}})
        elif spec.name in flat:
            values[spec.name] = flat[spec.name]
    return cls(**values)
