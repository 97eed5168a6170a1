"""What every configuration dataclass shares: the command-line name of a field, one-line
checks of its value, and the ``Args:`` docs that ``emoneuron --help`` shows.

Configs live in light ``config.py`` modules (no torch, no transformers) so the command line
builds its parser in a fraction of a second; each config checks its own fields in
``__post_init__``, before any model is loaded or file written.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping
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


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean X?)`` with the candidates closest to a mistyped ``word`` (two where they
    are about as close: ``--modle`` is one letter from ``--mode`` and one swap from
    ``--model``); "" when none is close.

    >>> did_you_mean("rn", ["run", "report", "record"])
    ' (did you mean run?)'
    >>> did_you_mean("--modle", ["--mode", "--model", "--data"])
    ' (did you mean --mode or --model?)'
    """
    scored = sorted(((difflib.SequenceMatcher(None, word, candidate).ratio(), candidate)
                     for candidate in candidates), reverse=True)
    close = [candidate for ratio, candidate in scored
             if ratio >= max(CLOSE, scored[0][0] - ABOUT_AS_CLOSE)][:2] if scored else []
    return f" (did you mean {' or '.join(close)}?)" if close else ""


# difflib's similarity ratio of a word and the candidate suggested for it, at least; and how much
# less similar a second candidate may be and still be suggested beside the first.
CLOSE = 0.5
ABOUT_AS_CLOSE = 0.1


def at_least(name: str, value: float, smallest: float) -> None:
    """A UserError naming the option unless ``value`` is at least ``smallest``.

    >>> at_least("shots", -1, 0)
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


# One range for every seed: numpy's generators take any seed from 0, torch's up to 2**64 - 1, and
# a seed stored as a signed 64-bit integer must stay below 2**63.
MAX_SEED = 2**63 - 1


def check_seeds(name: str, values: Iterable[int]) -> None:
    """A UserError naming the option unless every seed is a whole number from 0 to MAX_SEED.

    >>> check_seeds("control_seeds", (0, -1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    emoneuron.errors.UserError: --control-seeds 0 -1: a seed is a whole number from 0 to ...
    """
    values = tuple(values)
    if any(not 0 <= value <= MAX_SEED for value in values):
        raise UserError(f"{flag(name)} {_shown(values)}: a seed is a whole number from 0 to "
                        f"{MAX_SEED}, e.g. 0")


def check_fraction(name: str, value: float) -> None:
    """A UserError naming the option unless ``value`` is strictly between 0 and 1.

    >>> check_fraction("eval_fraction", 1.5)
    Traceback (most recent call last):
    emoneuron.errors.UserError: --eval-fraction 1.5: must be between 0 and 1, e.g. 0.4
    """
    if not 0 < value < 1:
        raise UserError(f"{flag(name)} {value}: must be between 0 and 1, e.g. 0.4")


# The most of a model's neurons a selection may keep: emotion neurons are a small share, and a
# share of 1 (every neuron, a full run's worth of work) was once taken from a typo.
MAX_SHARE = 0.5


def share_of_neurons(text: str) -> float:
    """A ``--share`` as typed: a fraction in (0, 0.5] or a percentage up to 50%.

    >>> share_of_neurons("5%"), share_of_neurons("0.05")
    (0.05, 0.05)
    >>> share_of_neurons("1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: '1': give a fraction in (0, 0.5] or a percentage N% up to 50%, \
e.g. 0.01 or 1%
    """
    number = text.strip()
    percent = number.endswith("%")
    try:
        value = float(number.removesuffix("%")) / (100 if percent else 1)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SHARE:  # also refuses NaN
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a fraction in (0, {MAX_SHARE}] or a percentage N% up to "
            f"{MAX_SHARE:.0%}, e.g. 0.01 or 1%")
    return value


# Options whose text has a form of its own beyond their field's type, by field name.
OPTION_FORMS: dict[str, Callable[[str], Any]] = {"share": share_of_neurons}


def changed_fields(config: Any, names: Iterable[str]) -> list[str]:
    """The fields of the dataclass ``config`` among ``names`` (each with a plain default, not a
    factory) that hold other values than their defaults: the options a command line gave (a
    default given explicitly reads as not given)."""
    wanted = set(names)
    return [spec.name for spec in dataclasses.fields(config) if spec.name in wanted
            and getattr(config, spec.name) != spec.default]


def as_given(name: str, value: Any) -> str:
    """The option as a command line gives it.

    >>> as_given("calibrate", False), as_given("prompt", "chat"), as_given("workers", 4)
    ('--no-calibrate', '--prompt chat', '--workers 4')
    """
    if isinstance(value, bool):
        return flag(name) if value else f"--no-{flag(name)[2:]}"
    shown = " ".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    return f"{flag(name)} {shown}"


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


def is_whole(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy's too); a bool or a float never is, so a layer of
    1.7 is refused where it would be truncated.

    >>> is_whole(3), is_whole(3.0), is_whole(True)
    (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` names: a bool is no number, an int is a float,
    a tuple is a tuple (of values that fit its element type); a ``Literal``'s values are
    checked by :func:`check_fields` (for a message naming the choices)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_whole(value)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def check_fields(config: Any) -> None:
    """Check every field of the dataclass ``config``: a TypeError naming the field whose value
    is not of its type (a caller's mistake: the command line parses each option's type), then a
    UserError naming the option for the first ``Literal`` field holding a value it does not
    allow."""
    hints = typing.get_type_hints(type(config))
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if not _fits(value, hints[spec.name]):
            raise TypeError(f"{type(config).__name__}: {spec.name}={value!r} is not of type "
                            f"{_type_name(hints[spec.name])}")
    for spec in dataclasses.fields(config):
        allowed = choices(hints[spec.name])
        value = getattr(config, spec.name)
        values = value if isinstance(value, tuple) else (value,)
        wrong = [v for v in values if v not in allowed]
        if allowed and wrong:
            raise UserError(f"{flag(spec.name)} {_shown(value)}: use "
                            f"{'some' if isinstance(value, tuple) else 'one'} of "
                            f"{', '.join(allowed)}{did_you_mean(str(wrong[0]), allowed)}")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


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
        if _is_config(hint):
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
        if _is_config(hint):
            values[spec.name] = nested(hint, {name: value for name, value in flat.items()
                                              if name in {s.name for _, s in leaf_fields(hint)}})
        elif spec.name in flat:
            values[spec.name] = flat[spec.name]
    return cls(**values)


def recorded_settings(cls: type[Any], mapping: Mapping[str, Any], source: str,
                      forms: Mapping[str, Callable[[str], Any]] | None = None) -> dict[str, Any]:
    """The field values of the dataclass ``cls`` in ``mapping`` (a config file's tables, or a
    manifest's ``config``), by field name as :func:`nested` takes them: keys are field names,
    a nested config is a table of its own (``[design]``), lists are tuples. ``forms`` parses
    the values of the fields named there as if typed on the command line (``share = "5%"``).
    A key that is no field, a table where a value belongs (or the reverse) or a value of
    another type is refused in one line naming ``source`` and the key.

    >>> from emoneuron.config import RunConfig
    >>> recorded_settings(RunConfig, {"seed": 1, "design": {"proportions": [0.5, 1.0]}}, "f")
    {'seed': 1, 'proportions': (0.5, 1.0)}
    >>> recorded_settings(RunConfig, {"modle": "m"}, "run.toml")
    Traceback (most recent call last):
    emoneuron.errors.UserError: run.toml: unknown key 'modle' (did you mean model?)
    """
    flat: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    names = [spec.name for spec in dataclasses.fields(cls)]
    for key, value in mapping.items():
        if key not in hints:
            section = next((f" (it belongs in the table [{owner}])" for owner in names
                            if _is_config(hints[owner]) and key in {
                                spec.name for _, spec in leaf_fields(hints[owner])}), "")
            raise UserError(f"{source}: unknown key {key!r}"
                            f"{section or did_you_mean(key, names)}")
        hint = hints[key]
        if _is_config(hint) != isinstance(value, Mapping):
            raise UserError(f"{source}: {key} is " + (
                f"a table of options ([{key}]), not a value" if _is_config(hint)
                else "a value, not a table"))
        if _is_config(hint):
            flat.update(recorded_settings(hint, value, source, forms))
            continue
        if forms and key in forms and isinstance(value, str | int | float):
            try:
                value = forms[key](str(value))
            except argparse.ArgumentTypeError as error:
                raise UserError(f"{source}: {key} {error}") from None
        value = tuple(value) if isinstance(value, list) else value
        if not _fits(value, hint):
            raise UserError(f"{source}: {key} = {value!r} is not of type {_type_name(hint)}")
        flat[key] = value
    return flat


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)
