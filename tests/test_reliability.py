"""Reliability (issue 7): a run killed with SIGKILL resumes to the same result as an
uninterrupted one, a seed fixes every output byte, the record reader survives arbitrary input,
and a corrupted conversion cache entry is reported, not crashed on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emoneuron.app.run import design_of
from emoneuron.causal.conditions.grid import grid
from emoneuron.causal.experiments.dirtest import NULLS, direction_cells
from emoneuron.causal.experiments.method_comparison import method_conditions
from emoneuron.causal.inference.setlevel import set_level_conditions
from emoneuron.cli import main
from emoneuron.config import preset_config
from emoneuron.data.schema import (
    ALIASES,
    EMOTIONS,
    NEUTRAL,
    Record,
    read_records,
    records_hash,
    write_records,
)
from emoneuron.errors import UserError
from emoneuron.selection.identify import SELECTION_METHODS

# -- kill and resume, determinism --------------------------------------------------------------

PROPORTIONS = (0.5, 1.0)
TABLES = ("ablation.csv", "effects.csv", "sweep.csv", "dose.csv", "specificity.csv",
          "confusion.csv", "methods.csv", "neurons.json", "steering.json")
# The conditions of the runs below: RunConfig's defaults with these proportions, then every
# registered selection method's comparison (none equals the run's own: it selects 5%).
_DESIGN = design_of(preset_config(proportions=PROPORTIONS, null_sets=2, scopes=("all", "last"),
                                  cross_per_emotion=1))
CONDITIONS = [*grid(_DESIGN), *(c for name in SELECTION_METHODS
                                for c in method_conditions(_DESIGN, name, (0,))),
              *(c for tag in ("", *SELECTION_METHODS) for c in set_level_conditions(_DESIGN, tag)),
              # Each emotion's direction once and its nulls (2 random sets: no look stops one).
              *{c.key: c for null in NULLS for cell in direction_cells(_DESIGN, null)
                for c in cell}.values()]
KILL_AFTER = 8  # finished conditions in conditions.jsonl before the SIGKILL
TIMEOUT = 300  # seconds for one subprocess run; a tiny run takes a few


def _args(model_dir: Path, out: Path) -> list[str]:
    return ["run", "--model", str(model_dir), "--out", str(out), "--per-emotion", "8",
            "--max-turns", "2", "--share", "0.05",
            "--proportions", *map(str, PROPORTIONS), "--quiet", "--threads", "1",
            "--null-sets", "2", "--scopes", "all", "last", "--cross-per-emotion", "1"]


def _command(model_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "emoneuron.cli", *_args(model_dir, out)]


def _run_to_completion(model_dir: Path, out: Path) -> None:
    result = subprocess.run(_command(model_dir, out), capture_output=True, text=True,
                            timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _finished_lines(path: Path) -> int:
    """Complete (newline-terminated) lines; a line being written does not count."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One uninterrupted run, in its own process."""
    out = tmp_path_factory.mktemp("reference")
    _run_to_completion(tiny_model_dir, out)
    return out


def test_sigkill_and_resume_equals_uninterrupted(reference: Path, tiny_model_dir: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "killed"
    store = out / "conditions.jsonl"
    n_conditions = len(CONDITIONS)
    with (tmp_path / "killed.log").open("w") as log:
        process = subprocess.Popen(_command(tiny_model_dir, out), stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + TIMEOUT
            while _finished_lines(store) < KILL_AFTER:
                assert process.poll() is None, (
                    "the run ended before it could be killed (exit code "
                    f"{process.returncode}); make its data bigger:\n"
                    + (tmp_path / "killed.log").read_text())
                assert time.monotonic() < deadline, "no conditions finished in time"
                time.sleep(0.002)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.kill()  # no-op once it is dead; never leaves a stray run behind
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "report.html").exists()
    assert KILL_AFTER <= _finished_lines(store) < n_conditions

    _run_to_completion(tiny_model_dir, out)

    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    keys = [entry["key"] for entry in _entries(store)]
    assert len(keys) == len(set(keys)), "a condition was stored twice"
    assert set(keys) == {c.key for c in CONDITIONS}
    resumed = {entry["key"]: entry for entry in _entries(store)}
    assert resumed == {entry["key"]: entry for entry in _entries(reference / "conditions.jsonl")}


@pytest.mark.parametrize(("signal_number", "exit_code"),
                         [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_says_how_to_resume_and_leaves_no_temporary_file(
        reference: Path, tiny_model_dir: Path, tmp_path: Path, signal_number: int,
        exit_code: int) -> None:
    out = tmp_path / "interrupted"
    store = out / "conditions.jsonl"
    process = subprocess.Popen(_command(tiny_model_dir, out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while _finished_lines(store) < KILL_AFTER:
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no conditions finished in time"
            time.sleep(0.002)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == exit_code, stderr
    last = stderr.strip().splitlines()[-1]
    finished = _finished_lines(store)
    assert last == ("interrupted; rerun the same command to resume from "
                    f"{finished} finished conditions")
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    _run_to_completion(tiny_model_dir, out)
    assert (out / "effects.csv").read_bytes() == (reference / "effects.csv").read_bytes()


def test_same_seed_gives_byte_identical_outputs(reference: Path, tiny_model_dir: Path,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The second run is in this process: another process (so another str hash seed) and
    # another global torch/numpy RNG state than the reference's fresh interpreter.
    out = tmp_path / "again"
    assert main(_args(tiny_model_dir, out)) == 0, capsys.readouterr().err
    for name in (*TABLES, "conditions.jsonl", "data/fewshot.jsonl", "data/identify.jsonl",
                 "data/eval.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name

    def manifest(run_dir: Path) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
        del payload["created"], payload["timings"]
        return payload

    mine, theirs = manifest(out), manifest(reference)
    for section in sorted({*mine, *theirs}):
        if isinstance(mine.get(section), dict) and isinstance(theirs.get(section), dict):
            changed = {key: (mine[section].get(key), theirs[section].get(key))
                       for key in {*mine[section], *theirs[section]}
                       if mine[section].get(key) != theirs[section].get(key)}
            assert not changed, f"manifest {section}: {changed}"
        assert mine.get(section) == theirs.get(section), section


# -- fuzzing the record reader -------------------------------------------------------------------

# Text including lone surrogates, which JSON can spell ("\ud800") but UTF-8 cannot encode.
TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children,
                                                                        max_size=4),
    max_leaves=12,
)
LABELS = st.sampled_from(EMOTIONS + tuple(ALIASES)).map(
    lambda label: label.upper() if len(label) % 3 == 0 else f" {label} ")
TURNS = st.fixed_dictionaries({}, optional={"speaker": JSON_VALUES, "text": TEXT | JSON_VALUES})
# Near-records (the right keys, values of any kind) as well as arbitrary values: random values
# alone almost never get past the first check.
PAYLOADS = JSON_VALUES | st.fixed_dictionaries({}, optional={
    "id": TEXT | JSON_VALUES, "emotion": LABELS | JSON_VALUES,
    "turns": st.lists(TURNS | JSON_VALUES, max_size=3) | JSON_VALUES,
    "source": JSON_VALUES, "meta": JSON_VALUES,
})
FUZZ = settings(max_examples=200, deadline=None)


def _assert_valid(record: Record) -> None:
    assert record.emotion in (*EMOTIONS, NEUTRAL)
    assert isinstance(record.id, str) and isinstance(record.source, str)
    assert isinstance(record.meta, dict) and record.turns
    for turn in record.turns:
        assert isinstance(turn.speaker, str) and isinstance(turn.text, str)
        assert turn.text and turn.text == turn.text.strip()
    # What the pipeline does with a record next: hash it, write it, read it back.
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record


@FUZZ
@given(PAYLOADS)
@example({"id": "a", "emotion": "anger", "turns": [{"speaker": "\ud800", "text": "hi"}]})
@example({"id": 1, "emotion": "JOY", "turns": [{"speaker": [None], "text": " hi "}],
          "meta": "not an object"})
def test_from_json_raises_only_value_error(payload: Any) -> None:
    try:
        record = Record.from_json(payload)
    except ValueError:
        return
    _assert_valid(record)
    records_hash([record])


@FUZZ
@given(st.binary(max_size=300)
       | st.lists(PAYLOADS.map(lambda p: json.dumps(p).encode()) | st.binary(max_size=40),
                  max_size=4).map(b"\n".join))
@example(b"[" * 5_000)  # nesting deeper than the JSON decoder's recursion limit
@example(b'{"id": "a", "emotion": "anger", "turns": [{"text": "\\ud800"}]}')
@example(b'{"id": "a", "emotion": "anger", "turns": [{"text": "\xff\xfe"}]}')
def test_read_records_raises_only_user_error(tmp_path_factory: pytest.TempPathFactory,
                                             data: bytes) -> None:
    directory = tmp_path_factory.getbasetemp() / "fuzz-records"
    directory.mkdir(exist_ok=True)
    path = directory / "data.jsonl"
    path.write_bytes(data)
    try:
        records = read_records(path)
    except UserError:
        return
    assert records and len({r.id for r in records}) == len(records)
    for record in records:
        _assert_valid(record)
    write_records(directory / "again.jsonl", records)
    assert read_records(directory / "again.jsonl") == records
    assert records_hash(records)


# -- a corrupted conversion cache entry --------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage config.json", "truncated weights"])
def test_corrupted_cache_entry_is_a_user_error(damage: str, tiny_model_dir: Path,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from emoneuron.models import loading

    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")

    def convert(gguf_file: Path, out_dir: Path) -> None:
        # A conversion that went wrong after writing (full disk, killed, bit rot).
        shutil.copytree(tiny_model_dir, out_dir)
        if damage == "garbage config.json":
            (out_dir / "config.json").write_text("{not json")
        else:
            weights = out_dir / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    entry, _ = loading.resolve(str(gguf))
    assert entry.parent == tmp_path / "cache" / "models" and (entry / "config.json").is_file()

    code = main(["run", "--model", str(gguf), "--per-emotion", "6", "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err.strip().splitlines()[-1]  # libraries may warn before it
    assert code == 2, error
    assert error.startswith(f"error: {entry}: cached conversion") and "delete this" in error

    # Deleting it, as the message says, makes the next load convert again.
    monkeypatch.setattr(loading, "_convert_gguf",
                        lambda _, out_dir: shutil.copytree(tiny_model_dir, out_dir))
    shutil.rmtree(entry)
    assert loading.load(str(gguf)).directory == entry


def test_broken_user_directory_is_not_called_a_cache_entry(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    monkeypatch.setenv("EMONEURON_CACHE", str(tmp_path / "cache"))
    mine = tmp_path / "mine"
    shutil.copytree(tiny_model_dir, mine)
    weights = mine / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code = main(["run", "--model", str(mine), "--per-emotion", "6",
                 "--out", str(tmp_path / "o")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "cached conversion" not in last
    assert last.startswith(f"error: {mine}: does not load as a causal language model")


# -- refusing to start ---------------------------------------------------------------------------

def _tiny_run_args(model_dir: Path, out: Path) -> list[str]:
    return ["run", "--model", str(model_dir), "--out", str(out), "--per-emotion", "8",
            "--max-turns", "2", "--share", "0.05", "--proportions", "1.0", "--quiet"]


def test_nearly_full_disk_refuses_before_writing(tiny_model_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    out = tmp_path / "run"
    out.mkdir()  # an empty directory: a directory of other files is refused before this check
    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: real._replace(free=2**20))
    assert main(_tiny_run_args(tiny_model_dir, out)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' own bars
    assert last.startswith(f"error: {out}: 1 MiB free, a run needs about")
    assert list(out.iterdir()) == []


def test_run_directory_of_another_version_is_refused(tiny_model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "old-run"
    out.mkdir()
    manifest = json.dumps({"emoneuron_version": "0.0.1"})
    (out / "manifest.json").write_text(manifest)
    assert main(_tiny_run_args(tiny_model_dir, out)) == 2
    assert "written by emoneuron 0.0.1" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == manifest
