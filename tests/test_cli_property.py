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

The other commands with numeric options or positionals (``record``, ``neuron``, ``data load``,
``data overlap``, ``data generate``) get the same values, and every file around them is hashed:
exit 0, or exit 2 with the tree unchanged. Neuron files given to ``ablate`` and ``neuron`` get
one hostile value at a time (a layer, index or score of any JSON type, a neuron twice, a
declared shape, model, site, parameters or overlap): each is refused in one line, or passes
every check and reaches the model load (which the test stops), and either way nothing is
written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from file_safety import tree
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emoneuron.cli import build_parser, main
from emoneuron.data.schema import write_records
from emoneuron.data.synth import synthesize

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


def _exit_and_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit status and stderr of ``emoneuron ARGV``, which must be 0 or 2, never a
    traceback."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refuses a value that is not of the option's type
        code = stop.code if isinstance(stop.code, int) else 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (argv, err)
    return code, err


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
    code, err = _exit_and_errors(argv, capsys)
    if code == 2:
        left = (not out.exists() if existing == "new" else
                out.read_text() == "mine\n" if existing == "file" else
                [p.name for p in out.iterdir()] == ["mine"])
        assert left and err.strip(), argv


# -- the other commands' numeric options and positionals -----------------------------------------

# Each command with inputs that fail after its options' checks and before any work (MISSING is a
# path that does not exist; DATA a small records file; OUT an empty folder of the case), but
# ``neuron``, which checks its layer and ``--top`` against a model and so reads a finished run
# (RUN) and loads its tiny model; a positional in capitals takes the value in its case, "0" in
# the others.
MORE: dict[str, list[str]] = {
    "record": ["record", "--model", "MISSING", "--data", "MISSING", "--out", "OUT/s.safetensors"],
    "neuron": ["neuron", "RUN", "LAYER", "INDEX"],
    "data load": ["data", "load", "MISSING", "--format", "jsonl", "--out", "OUT/l.jsonl"],
    "data overlap": ["data", "overlap", "DATA", "DATA"],
    "data generate": ["data", "generate", "--model", "MISSING", "--out", "OUT/g.jsonl"],
}
POSITIONALS = ("LAYER", "INDEX")
SKIP = ("--format", "--device", "--endpoint", "--api-key-env", "--split", *FIXED)


def _more_options(command: str) -> list[str]:
    parser = _subparser(command.split())
    options = sorted(flag for action in parser._actions for flag in action.option_strings[:1]
                     if flag.startswith("--") and flag not in SKIP and action.nargs != 0
                     and not flag.endswith("-column"))
    return options + [word for word in MORE[command] if word in POSITIONALS]


MORE_CASES = [(command, option) for command in MORE for option in _more_options(command)]


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(MORE_CASES), value=st.sampled_from((*HOSTILE, HUGE)))
# Values that once passed the checks and failed after the model loaded: torch's topk refused them.
@example(case=("neuron", "--top"), value="0")
@example(case=("neuron", "--top"), value=HUGE)
@example(case=("neuron", "INDEX"), value="-1")
def test_the_other_commands_numeric_values_exit_0_or_2_and_change_no_file(
        case: tuple[str, str], value: str, finished_run: tuple[Path, Path],
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    command, option = case
    base = tmp_path_factory.mktemp("case")
    write_records(base / "data.jsonl", synthesize(1, seed=0, max_turns=2))
    (base / "out").mkdir()
    run = finished_run[0]
    words = {"MISSING": str(base / "missing"), "DATA": str(base / "data.jsonl"),
             "RUN": str(run)}
    argv = [value if word == option else "0" if word in POSITIONALS
            else words.get(word, word.replace("OUT", str(base / "out"), 1))
            for word in MORE[command]]
    if option not in POSITIONALS:
        argv += [option, value]
    before = {**tree(base), **tree(run)}
    code, err = _exit_and_errors(argv, capsys)
    if code == 2:
        assert err.strip() and {**tree(base), **tree(run)} == before, argv


# -- neuron files ------------------------------------------------------------------------------

class _Loaded(Exception):
    """Raised in place of loading the model: every check on the inputs has passed."""


def _mutated(payload: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """``payload`` with one value changed: a neuron's field (``layer``, ``index``, ``score``,
    ``duplicate``) of its first listed emotion, or a top-level key (``None`` removes it)."""
    changed = json.loads(json.dumps(payload))
    neurons = next(ns for ns in changed["emotions"].values() if ns)
    if where == "duplicate":
        neurons.append(dict(neurons[0]))
    elif where in ("layer", "index", "score"):
        neurons[0][where] = value
    elif value is None:
        changed.pop(where, None)
    else:
        changed[where] = value
    return changed


JSON_VALUES = (-1, 0, 1, 1.5, 1e300, float("inf"), float("nan"), 2**70, True, None, "1", "x",
               [], {}, [[1]], {"counts": "x"}, {"counts": [[1, 2]]})
PLACES = ("layer", "index", "score", "duplicate", "model", "site", "statistic", "n_layers",
          "width", "overlap", "parameters", "emotions", "rule")


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(PLACES), value=st.sampled_from(JSON_VALUES),
       command=st.sampled_from(("ablate", "neuron")))
def test_any_neurons_file_is_refused_in_one_line_or_reaches_the_model_having_written_nothing(
        where: str, value: Any, command: str, finished_run: tuple[Path, Path],
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run[0]
    base = tmp_path_factory.mktemp("neurons")
    neurons = base / "edited.json"
    neurons.write_text(json.dumps(_mutated(json.loads((run / "neurons.json").read_text()),
                                           where, value)))
    argv = (["ablate", str(run), "--neurons", str(neurons), "--name", "edited"]
            if command == "ablate" else ["neuron", str(run), "0", "1", "--neurons", str(neurons)])
    before = {**tree(run), **tree(base)}

    def loaded(*_: object, **__: object) -> None:
        raise _Loaded

    with monkeypatch.context() as patched:
        for module in ("emoneuron.models.loading", "emoneuron.app.ablate"):
            patched.setattr(f"{module}.load", loaded)
        try:
            code = main(argv)
        except _Loaded:
            code = 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (where, value, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    assert {**tree(run), **tree(base)} == before
