"""A refused command changes nothing, and says why in one line.

Every command that writes (``run``, ``ablate``, ``identify``, ``record``, ``report``,
``compare``, ``neuron``, ``evaluate``, ``series``, ``models export``, ``data *``) is given inputs
it refuses, in a working tree holding a finished run, a damaged copy, data and a folder of the
user's own files: it exits 2 with one line, loads no model, and leaves every file and folder of
the tree byte-identical (issue 24: write after check, everywhere). A run directory the command
may not write, a full disk and a file-size limit are one line too, and their advice works.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from file_safety import tiny_run_args, tree

import emoneuron
from emoneuron.cli import main
from emoneuron.data.schema import Record, Turn, write_records

SRC = Path(emoneuron.__file__).parents[1]  # the code under test, for a subprocess


@pytest.fixture
def work(finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path
         ) -> dict[str, Path]:
    """The working tree's paths by name; ``NEW`` does not exist."""
    run, damaged = tmp_path / "run", tmp_path / "damaged"
    for copy in (run, damaged):
        shutil.copytree(finished_run[0], copy)
    effects = (damaged / "effects.csv").read_bytes()
    (damaged / "effects.csv").write_bytes(effects[:len(effects) // 2])
    data = finished_run[1]  # the run's own, so only the options below differ
    neutral = tmp_path / "neutral.jsonl"
    write_records(neutral, [Record(id="n0", emotion="neutral", turns=(Turn("A", "Fine."),),
                                   source="test")])
    payload = json.loads((run / "neurons.json").read_text())
    next(ns for ns in payload["emotions"].values() if ns)[0]["layer"] = 0.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(payload))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own\n")
    (tmp_path / "notes.json").write_text('{"mine": true}\n')  # where record's description goes
    pages = tmp_path / "pages"  # the user's own files, named as a comparison's
    pages.mkdir()
    for name in ("compare.html", "timings.csv"):
        (pages / name).write_text("the user's own\n")
    return {"RUN": run, "DAMAGED": damaged, "DATA": data, "NEUTRAL": neutral, "BAD": bad,
            "MINE": mine, "PAGES": pages, "TOP": tmp_path, "NEW": tmp_path / "new",
            "MODEL": tiny_model_dir}


# Each refused invocation (its words: a name of ``work`` stands for its path, NAME/x for a path
# under it) and what its one line names.
REFUSED: dict[str, tuple[list[str], str]] = {
    "run: other settings": (["RUN_ARGS", "--seed", "1"], "holds a run with seed = 0"),
    "run: a folder of other files": (["MINE_ARGS"], "not empty (notes.txt) and holds no run"),
    "run: options that cannot work together": (
        ["run", "--model", "MODEL", "--out", "NEW", "--selection", "auroc"], "--controls "),
    "run: a site it cannot remove neurons at": (
        ["run", "--model", "MODEL", "--out", "NEW", "--site", "mlp.pre_activation"],
        "--site mlp.pre_activation: a run removes the neurons it finds, which it can at "
        "mlp.down_proj.input or mlp.activation only"),
    "run: a prompt style the prompt choice would ignore": (
        ["RUN_ARGS", "--prompt", "plain"],
        "--prompt plain: applies only to --prompt-choice fixed (--prompt-choice best picks the "
        "prompt style and calibration itself and would ignore it); add --prompt-choice fixed, "
        "or drop --prompt plain"),
    "run: no calibration where the prompt choice picks it": (
        ["run", "--model", "MODEL", "--out", "NEW", "--no-calibrate"],
        "--no-calibrate: applies only to --prompt-choice fixed"),
    "ablate: a method of the run": (
        ["ablate", "RUN", "--neurons", "RUN/neurons.json", "--name", "lape"],
        "a method of the run"),
    "ablate: a neurons file that does not fit": (["ablate", "RUN", "--neurons", "BAD"],
                                                 "is not a whole number"),
    "identify: a file of the run": (["identify", "RUN/stats.safetensors", "--out",
                                     "RUN/neurons.json"], "a file of the run"),
    "identify: no statistics file": (["identify", "DATA", "--out", "NEW/n.json"],
                                     "not a statistics file"),
    "record: a file of the run": (["record", "--model", "MODEL", "--data", "DATA", "--out",
                                   "RUN/stats.safetensors"], "a file of the run"),
    "record: a user's file where its description goes": (
        ["record", "--model", "MODEL", "--data", "DATA", "--out", "TOP/notes.safetensors"],
        "notes.json, which holds another file"),
    "record: no dialogue to record": (["record", "--model", "MODEL", "--data", "NEUTRAL",
                                       "--out", "NEW/s.safetensors"],
                                      "no dialogue of the six emotions"),
    "report: a damaged run": (["report", "DAMAGED"], "changed since the run wrote it"),
    "compare: a damaged run": (["compare", "RUN", "DAMAGED", "--out", "NEW"],
                               "changed since the run wrote it"),
    "compare: a folder of other files of the same names": (
        ["compare", "RUN", "RUN", "--out", "PAGES"],
        "not empty (compare.html, timings.csv) and holds no comparison (no compare.json)"),
    "neuron: outside the run's model": (["neuron", "RUN", "99", "0"],
                                        "neuron (99, 0) does not exist in "),
    "neuron: no tokens to show": (["neuron", "RUN", "0", "1", "--top", "0"], "--top 0"),
    "evaluate: a bad option": (["evaluate", "--model", "MODEL", "--data", "DATA", "--shots",
                                "-1", "--out", "NEW/e.csv"], "--shots -1"),
    "series: an unknown model": (["series", "--models", "nope", "--out", "NEW"],
                                 "--models nope"),
    "neurons export: a file of the run": (["neurons", "export", "RUN", "--format", "nnsight",
                                           "--out", "RUN/neurons.json"], "a file of the run"),
    "models export: a folder of other files": (["models", "export", "MODEL", "MINE"],
                                                "is not empty"),
    "models export: a hub model into a folder of other files": (
        ["models", "export", "org/name", "MINE"], "is not empty"),
    "data synth: a bad option": (["data", "synth", "--per-emotion", "-1", "--out",
                                  "NEW/s.jsonl"], "--per-emotion -1"),
    "data synth: a file of the run": (["data", "synth", "--out", "RUN/data/eval.jsonl"],
                                      "a file of the run"),
    "data load: a file of the run": (["data", "load", "DATA", "--format", "jsonl", "--out",
                                      "RUN/data/eval.jsonl"], "a file of the run"),
    "data keyword-free: a folder for a file": (["data", "keyword-free", "DATA", "--out",
                                                "MINE"], "is a directory"),
    "data generate: a bad option": (["data", "generate", "--per-pair", "0", "--out",
                                     "NEW/g.jsonl"], "per_pair must be at least 1"),
    "data generate: an absurd number of dialogues": (
        ["data", "generate", "--per-pair", "99999999999", "--out", "NEW/g.jsonl"],
        "--per-pair 99999999999: must be from 1 to 1000"),
    "data stats: no such file": (["data", "stats", "NEW/x.jsonl"], "no such data file"),
    "data lexical: no such file": (["data", "lexical", "NEW/x.jsonl"], "no such data file"),
    "data overlap: a bad threshold": (["data", "overlap", "DATA", "DATA", "--threshold", "2"],
                                      "threshold 2.0 must be in (0, 1]"),
}


def _argv(words: list[str], work: dict[str, Path]) -> list[str]:
    argv: list[str] = []
    for word in words:
        name, _, rest = word.partition("/")
        if word in ("RUN_ARGS", "MINE_ARGS"):
            argv += tiny_run_args(work["MODEL"], work[word.split("_")[0]], work["DATA"])
        elif name in work:
            argv.append(str(work[name] / rest if rest else work[name]))
        else:
            argv.append(word)
    return argv


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way a command loads a model fails the test: refusals come before any load."""
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a model was loaded before the refusal")

    for module in ("emoneuron.models.loading", "emoneuron.app.run", "emoneuron.app.ablate",
                   "emoneuron.causal.evaluation.prompts"):
        monkeypatch.setattr(f"{module}.load", refuse)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_command_loads_no_model_and_leaves_every_file_as_it_was(
        case: str, work: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    words, named = REFUSED[case]
    argv = _argv(words, work)
    before = tree(tmp_path)
    _no_model(monkeypatch)
    capsys.readouterr()
    assert main(argv) == 2, argv
    line = _one_line(capsys)
    assert line.startswith("error: ") and named in line, line
    assert tree(tmp_path) == before


def test_every_command_that_writes_has_a_refusal_tested() -> None:
    from emoneuron.cli import COMMANDS

    tested = {case.split(":")[0] for case in REFUSED}
    data = {name for name in tested if name.startswith("data ")}
    assert tested >= set(COMMANDS) - {"data", "models", "neurons"} | {"models export",
                                                                       "neurons export"}
    assert data == {f"data {name}" for name in ("synth", "load", "keyword-free", "generate",
                                                "stats", "lexical", "overlap")}


def test_a_series_into_a_folder_of_other_files_is_refused_before_any_run(
        work: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its comparison would replace the user's compare.html and timings.csv; its own folder
    (a comparison in it, or only its models' run folders) is written again."""
    from types import SimpleNamespace

    from emoneuron.app.series import check_out, run_series
    from emoneuron.errors import UserError

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a run began before the refusal")

    monkeypatch.setattr("emoneuron.app.run.run", refuse)
    config = SimpleNamespace(models=("smollm2-135m", "gemma3-270m"))
    (tmp_path / "series" / "smollm2-135m").mkdir(parents=True)
    shutil.copy(work["MINE"] / "notes.txt", tmp_path / "series" / "smollm2-135m")
    before = tree(tmp_path)
    with pytest.raises(UserError, match=r"not empty .compare.html, timings.csv. and holds no "
                                        r"series .no compare.json.; give a new or empty "
                                        r"directory, e.g. .*series$"):
        run_series(config, work["PAGES"])  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"smollm2-135m: not empty .notes.txt. and holds no run"):
        check_out(config, tmp_path / "series")  # type: ignore[arg-type]
    assert tree(tmp_path) == before
    (work["PAGES"] / "compare.json").write_text("{}")
    check_out(config, work["PAGES"])  # type: ignore[arg-type]
    (work["NEW"] / "smollm2-135m").mkdir(parents=True)
    check_out(config, work["NEW"])  # type: ignore[arg-type]


# -- prompts: built on the tokenizer alone, before the weights load -----------------------------

@pytest.fixture
def weightless(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model's directory without its weights: its tokenizer and config load, the model
    does not. A refusal with it proves its check ran before the weights were read."""
    copy = tmp_path / "weightless"
    shutil.copytree(tiny_model_dir, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    return copy


# A prompt the tiny tokenizer (word-level: no chat template, no C-F, Yes or No) cannot build:
# the options, the refusal's one line, and the options once its advice is followed.
PROMPT_REFUSALS: dict[str, tuple[list[str], str, list[str]]] = {
    "run: a chat prompt without a chat template": (
        ["run", "--prompt-choice", "fixed", "--prompt", "chat"],
        "error: this tokenizer has no chat template; use --prompt plain",
        ["run", "--prompt-choice", "fixed", "--prompt", "plain"]),
    "run: answer words that are not single tokens": (
        ["run", "--answer-format", "letters"],
        "the letters format's answer words are not single distinct tokens ({'A': [",
        ["run", "--answer-format", "label"]),
    "run: another format whose answer words are not single tokens": (
        ["run", "--other-formats", "yesno"],
        "the yesno format's answer words are not single distinct tokens ({'Yes': [1], 'No': "
        "[1]}); give --other-formats without yesno", ["run"]),
    "run: a few-shot prompt longer than the context": (
        ["run", "--shots", "12", "--no-data"],
        "error: the few-shot prompt takes 5248 of the model's 1024 tokens; give fewer --shots "
        "or shorter dialogues", ["run", "--shots", "1", "--no-data"]),
    "evaluate: answer words that are not single tokens": (
        ["evaluate", "--answer-formats", "label", "yesno"],
        "give --answer-formats without yesno", ["evaluate", "--answer-formats", "label"]),
}


@pytest.mark.parametrize("case", PROMPT_REFUSALS)
def test_a_prompt_that_cannot_work_is_refused_before_the_weights_load_and_its_advice_works(
        case: str, weightless: Path, finished_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Once found by the classifier after the model had loaded (7-17 s on SmolLM2). With the
    advice followed, the same command passes every prompt check and stops at the missing
    weights, the next thing it reads; nothing is written either way."""
    words, refusal, advised = PROMPT_REFUSALS[case]

    def argv(words: list[str]) -> list[str]:
        out = tmp_path / "new" / ("table.csv" if words[0] == "evaluate" else "")
        data = [] if "--no-data" in words else ["--data", str(finished_run[1])]
        return ["--quiet", words[0], "--model", str(weightless), "--out", str(out), *data,
                *(word for word in words[1:] if word != "--no-data")]

    before = tree(tmp_path)
    capsys.readouterr()
    assert main(argv(words)) == 2
    line = _one_line(capsys)
    assert refusal in line and line.startswith("error: "), line
    assert tree(tmp_path) == before
    assert main(argv(advised)) == 2
    assert _one_line(capsys).startswith(
        f"error: {weightless}: does not load as a causal language model (OSError: ")
    assert tree(tmp_path) == before


# -- a run directory the command may not write ---------------------------------------------------

def _read_only(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """``root`` as on a read-only mount, where os.access denies writing even to root."""
    access = os.access

    def denied(path: str | Path, mode: int, **kwargs: object) -> bool:
        inside = Path(path).absolute().is_relative_to(root.absolute())
        return False if inside and mode & os.W_OK else access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", denied)


@pytest.mark.parametrize("command", [["report", "RUN"],
                                     ["ablate", "RUN", "--neurons", "BAD_FREE", "--quiet"]])
def test_a_run_directory_that_cannot_be_written_is_refused_before_any_work(
        command: list[str], work: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Once a traceback from the first write, after the model had loaded and evaluated."""
    run = work["RUN"]
    neurons = tmp_path / "free.json"
    shutil.copy(run / "neurons.json", neurons)
    argv = [str(neurons) if word == "BAD_FREE" else word for word in _argv(command, work)]
    before = tree(tmp_path)
    with monkeypatch.context() as patched:
        _read_only(patched, run)
        _no_model(patched)
        assert main(argv) == 2
        assert _one_line(capsys) == (
            f"error: {run}: not writable, and `emoneuron {command[0]}` writes there; make it "
            f"writable (chmod -R u+w {run}) and rerun, or give a writable copy of the run "
            "(cp -r)")
    assert tree(tmp_path) == before
    assert main(argv) == 0  # writable again, as the message says


# -- a full disk and a file-size limit -----------------------------------------------------------

def test_a_file_size_limit_is_one_line_and_rerunning_without_it_works(tmp_path: Path) -> None:
    """``ulimit -f``: the write fails with EFBIG (Python ignores SIGXFSZ); the atomic write
    leaves no part of the file behind."""
    out = tmp_path / "synth.jsonl"
    limited = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
               "from emoneuron.cli import main; sys.exit(main(sys.argv[1:]))")
    argv = ["data", "synth", "--per-emotion", "20", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", limited, *argv], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0] == (f"error: {out}: File too large; free space on its disk (or raise the "
                        "file-size limit, ulimit -f) and rerun the same command")
    assert list(tmp_path.iterdir()) == []
    assert main(argv) == 0 and out.is_file()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_in_the_middle_of_a_run_is_one_line_and_the_run_resumes(
        code: int, finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    argv = tiny_run_args(tiny_model_dir, run, finished_run[1])

    def full(path: Path, *_: object) -> None:
        raise OSError(code, os.strerror(code), str(path))

    with monkeypatch.context() as patched:
        patched.setattr("emoneuron.app.run.write_csv", full)
        capsys.readouterr()
        assert main(argv) == 2
    err = capsys.readouterr().err  # the run's warnings, then its one error line
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and errors == err.strip().splitlines()[-1:], err
    fix = ("free space on its disk (or raise the file-size limit, ulimit -f)"
           if code == errno.ENOSPC else "check its permissions (or whether its disk is read-only)")
    assert errors[0].startswith(f"error: {run}/") and errors[0].endswith(
        f".csv: {os.strerror(code)}; {fix} and rerun the same command (it resumes)"), errors
    assert main(argv) == 0
    assert (run / "effects.csv").read_bytes() == (finished_run[0] / "effects.csv").read_bytes()
