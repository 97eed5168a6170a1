"""Any option value on the command line ends in exit 0 or one error line with exit 2.

Hypothesis sets one option of ``run``, ``identify``, ``data synth`` or ``evaluate`` (every
option their parsers declare, found from the parser itself) to a hostile value: negative, zero,
NaN, infinite, huge, empty or an unknown name, with ``--out`` new, an existing file or an existing
directory. Each case must exit 0 or 2 (argparse's own refusals included), print no traceback,
and on exit 2 leave no output behind (a new ``--out`` absent, an existing one unchanged).

Only ``data synth`` is cheap enough to run for real. ``run``, ``evaluate`` and ``identify`` get
inputs that fail before any model loads (a model path that does not exist; a statistics file
that does not exist): a value the options' checks accept then ends in that one error line, a
value they refuse ends in its own, and either way the case takes milliseconds. Sizes of the
synthetic data (``--per-emotion``, ``--max-turns``) get no huge value: a huge data set is a
legitimate, slow request, not a bad input.
"""

from __future__ import annotations

import argparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoneuron.cli import build_parser, main

HOSTILE = ("-3", "-1", "0", "1", "0.5", "nan", "inf", "-inf", "1e300", "", "bogus")
HUGE = "99999999999"
SIZES = ("--per-emotion", "--max-turns")
FIXED = ("--out", "--model", "--data", "--quiet", "--debug", "--help")
COMMANDS: dict[str, list[str]] = {
    "run": ["run", "--model", "MISSING"],
    "evaluate": ["evaluate", "--model", "MISSING"],
    "identify": ["identify", "MISSING"],
    "data synth": ["data", "synth", "--per-emotion", "1", "--max-turns", "2"],
}


def _subparser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = choices.choices[word]
    return parser


def _options(command: str) -> list[str]:
    """The options of ``command`` that take a value, except those every case sets itself."""
    words = COMMANDS[command][:1] if command != "data synth" else ["data", "synth"]
    return sorted(flag for action in _subparser(words)._actions
                  for flag in action.option_strings[:1]
                  if flag.startswith("--") and flag not in FIXED and action.nargs != 0)


CASES = [(command, option) for command in COMMANDS for option in _options(command)]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES), value=st.sampled_from((*HOSTILE, HUGE)),
       existing=st.sampled_from(("new", "file", "directory")))
def test_any_option_value_exits_0_or_2_without_a_traceback(
        case: tuple[str, str], value: str, existing: str,
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    command, option = case
    if value == HUGE and option in SIZES:
        value = "1"
    base = tmp_path_factory.mktemp("case")
    out = base / ("out.jsonl" if command == "data synth" else "out")
    if existing == "file":
        out.write_text("mine\n")
    elif existing == "directory":
        (out / "mine").mkdir(parents=True)
    argv = [str(base / "missing") if word == "MISSING" else word for word in COMMANDS[command]]
    argv += [option, value, "--out", str(out)]
    if command == "run":
        argv.append("--quiet")
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refuses a value that is not of the option's type
        code = stop.code if isinstance(stop.code, int) else 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (argv, err)
    if code == 2:
        left = (not out.exists() if existing == "new" else
                out.read_text() == "mine\n" if existing == "file" else
                [p.name for p in out.iterdir()] == ["mine"])
        assert left and err.strip(), argv
