"""The run directory: file names in one place, verified reads, one owner at a time, and no
module reaching into another's private names."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from file_safety import tiny_run_args, tree

from emoneuron.cli import main
from emoneuron.data.schema import write_records
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.layout import LOCK
from emoneuron.rundir import RunDir

SRC = Path(__file__).parents[1] / "src" / "emoneuron"


def test_no_module_imports_a_private_name_of_another() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emoneuron"):
                found += [f"{path.relative_to(SRC)}: {node.module}.{alias.name}"
                          for alias in node.names
                          if alias.name.startswith("_") and not alias.name.endswith("__")]
    assert not found, found


# -- a finished tiny run, and what may and may not be done to it ---------------------------------

def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line (after transformers' weight-loading bars where a model loaded)."""
    lines = [line for line in capsys.readouterr().err.strip().splitlines()
             if not line.startswith("Loading weights")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("change", "named"), [
    (["--seed", "1"], "holds a run with seed = 0, this command has 1"),
    (["--per-emotion", "9"], "holds a run with per_emotion = 40, this command has 9"),
    (["--model", "org/tiny-other"], "holds a run with model = "),
    (["--data", "OTHER"], "holds a run with data = "),
    (["--data", "EDITED"], "holds a run on other data (hash "),
])
def test_another_run_into_a_finished_directory_changes_nothing(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path, change: list[str],
        named: str, capsys: pytest.CaptureFixture[str]) -> None:
    run, data = finished_run
    copy = _copy(run, tmp_path)
    other = tmp_path / "other.jsonl"
    write_records(other, synthesize(8, seed=5, max_turns=2))
    if change[-1] == "EDITED":  # the same file, other dialogues in it
        data = tmp_path / "data.jsonl"
        write_records(data, synthesize(8, seed=6, max_turns=2))
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["config"]["data"] = str(data)
        (copy / "manifest.json").write_text(json.dumps(manifest))
        change = []
    change = [str(other) if value == "OTHER" else value for value in change]
    before = tree(copy)
    capsys.readouterr()
    assert main([*tiny_run_args(tiny_model_dir, copy, data), *change]) == 2
    assert named in _error(capsys)
    assert tree(copy) == before


def test_a_run_from_before_a_setting_existed_resumes_as_its_default(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run, data = finished_run
    copy = _copy(run, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    for added in ("baseline_data", "baseline_per_emotion"):  # settings newer than the run
        del manifest["config"][added]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main([*tiny_run_args(tiny_model_dir, copy, data), "--baseline-per-emotion", "5"]) == 2
    assert "holds a run with baseline_per_emotion = 30, this command has 5" in _error(capsys)
    assert main(tiny_run_args(tiny_model_dir, copy, data)) == 0
    assert (copy / "effects.csv").read_bytes() == (run / "effects.csv").read_bytes()


def test_a_run_resumes_with_settings_that_do_not_change_its_results(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    run, data = finished_run
    copy = _copy(run, tmp_path)
    assert main([*tiny_run_args(tiny_model_dir, copy, data), "--kernel", "torch", "--batch-size",
                 "3"]) == 0
    for name in ("effects.csv", "neurons.json", "methods.csv"):
        assert (copy / name).read_bytes() == (run / name).read_bytes(), name


RERUN = "rerun the `emoneuron run` command that wrote it (it resumes)"


def _damage(copy: Path, damage: str) -> str:
    """Damage one file of the run ``copy`` as ``damage`` says; return what readers name."""
    manifest = copy / "manifest.json"
    if damage == "cut table":
        effects = (copy / "effects.csv").read_bytes()
        (copy / "effects.csv").write_bytes(effects[:len(effects) // 2])
        return f"{copy / 'effects.csv'}: changed since the run wrote it"
    if damage == "cut manifest":
        manifest.write_bytes(manifest.read_bytes()[:100])
        return f"{manifest}: unreadable ("
    payload = json.loads(manifest.read_text())
    section = damage.removeprefix("manifest without ")
    del payload[section]
    manifest.write_text(json.dumps(payload))
    return f"{manifest}: incomplete (no '{section}')"


@pytest.mark.parametrize("damage", ["cut table", "cut manifest", "manifest without created",
                                    "manifest without data"])
def test_a_damaged_run_is_one_line_whose_advice_mends_it(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path, damage: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each reader of the damaged file refuses it in one line that says to rerun the run;
    doing so works (a manifest cut or lacking a section once refused that rerun with the same
    line), and the run is whole again: the report, which checks every file, accepts it."""
    run, data = finished_run
    copy = _copy(run, tmp_path)
    named = _damage(copy, damage)
    neurons = tmp_path / "mine.json"
    shutil.copy(run / "neurons.json", neurons)
    readers = [["report", str(copy)], ["compare", str(run), str(copy), "--out",
                                       str(tmp_path / "compare")]]
    if "manifest" in damage:  # what every reader of a run reads first
        readers += [["neuron", str(copy), "0", "1"],
                    ["ablate", str(copy), "--neurons", str(neurons)]]
    before = tree(tmp_path)
    capsys.readouterr()
    for reader in readers:
        assert main(reader) == 2, reader
        error = _error(capsys)
        assert error.startswith(f"error: {named}") and error.endswith(RERUN), (reader, error)
    assert tree(tmp_path) == before
    assert main(tiny_run_args(tiny_model_dir, copy, data)) == 0
    assert main(["report", str(copy)]) == 0
    assert (copy / "effects.csv").read_bytes() == (run / "effects.csv").read_bytes()


def test_a_corrupted_condition_record_is_mended_as_its_message_says(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run, data = finished_run
    copy = _copy(run, tmp_path)
    store = copy / "conditions.jsonl"
    lines = store.read_text().splitlines()
    lines[1] = lines[1][:40]  # a torn record before the last: no kill leaves one there
    store.write_text("\n".join(lines) + "\n")
    assert main(["report", str(copy)]) == 2
    assert _error(capsys).endswith(RERUN)
    assert main(tiny_run_args(tiny_model_dir, copy, data)) == 2
    assert _error(capsys) == (f"error: {store}:2: corrupted condition record; delete the file "
                              "and rerun the same command to recompute its conditions")
    store.unlink()
    assert main(tiny_run_args(tiny_model_dir, copy, data)) == 0
    assert main(["report", str(copy)]) == 0
    assert (copy / "effects.csv").read_bytes() == (run / "effects.csv").read_bytes()


def test_edited_neurons_are_refused_by_report_compare_and_neuron(
        finished_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(finished_run[0], tmp_path)
    neurons = json.loads((copy / "neurons.json").read_text())
    neurons["emotions"]["anger"] = neurons["emotions"]["anger"][1:]
    (copy / "neurons.json").write_text(json.dumps(neurons))
    for command in (["report", str(copy)], ["neuron", str(copy), "0", "1"],
                    ["compare", str(finished_run[0]), str(copy), "--out", str(tmp_path / "c")]):
        assert main(command) == 2
        assert f"{copy / 'neurons.json'}: changed since the run wrote it" in _error(capsys)


def test_neurons_outside_the_model_are_refused_where_read(
        finished_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(finished_run[0], tmp_path)
    neurons = json.loads((copy / "neurons.json").read_text())
    neurons["emotions"]["anger"].append({"layer": 99, "index": 99999, "score": 1.0})
    (copy / "neurons.json").write_text(json.dumps(neurons))
    RunDir(copy).add_files(["neurons.json"])  # listed, so only the shape can refuse it
    outside = "anger neuron layer 99 index 99999 is outside the model (2 layers x 80 neurons)"
    for command in (["report", str(copy)], ["neuron", str(copy), "0", "1"],
                    ["neuron", str(finished_run[0]), "0", "1", "--neurons",
                     str(copy / "neurons.json")]):
        assert main(command) == 2
        assert f"{copy / 'neurons.json'}: {outside}" in _error(capsys)


@pytest.mark.parametrize(("command", "named"), [
    (["report"], "manifest.json: missing"),
    (["neuron", "DIR", "0", "1"], "neither a run directory (no manifest.json) nor a model"),
    (["identify", "DIR", "--out", "OUT"], "a directory, not a statistics file"),
    (["identify", "JSONL", "--out", "OUT"], "not a statistics file (safetensors)"),
])
def test_not_a_run_directory_or_statistics_file_is_named(
        tmp_path: Path, command: list[str], named: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = tmp_path / "data.jsonl"
    write_records(jsonl, synthesize(1, seed=0, max_turns=2))
    values = {"DIR": str(tmp_path), "JSONL": str(jsonl), "OUT": str(tmp_path / "n.json")}
    args = [values.get(a, a) for a in command] + ([str(tmp_path)] if len(command) == 1 else [])
    before = tree(tmp_path)
    assert main(args) == 2
    error = _error(capsys)
    assert named in error and "delete" not in error
    assert tree(tmp_path) == before


@pytest.mark.parametrize("contents", [
    ("report.html", "data/eval.jsonl", "figures/methods.png", "effects.csv"),  # a look-alike
    ("notes.txt",),
    ("empty-folder/",),
    (".hidden",),
])
def test_run_refuses_a_directory_of_other_files_before_writing(
        tiny_model_dir: Path, tmp_path: Path, contents: tuple[str, ...],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    for name in contents:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            (out / name).mkdir()
        else:
            (out / name).write_text("the user's own\n")
    data = tmp_path / "data.jsonl"
    write_records(data, synthesize(2, seed=0, max_turns=2))
    before = tree(out)
    assert main(tiny_run_args(tiny_model_dir, out, data)) == 2
    error = _error(capsys)
    assert error.startswith(f"error: --out {out}: not empty (") and "holds no run" in error
    assert error.endswith(f"give a new or empty directory, e.g. {out / 'run'}")
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == sorted(
        {name.split("/")[0] for name in contents})


def test_a_new_an_empty_or_a_stopped_run_directory_may_be_run_into(tmp_path: Path) -> None:
    RunDir(tmp_path / "new").check_new_or_own()
    RunDir(tmp_path).check_new_or_own()
    (tmp_path / LOCK).write_text("{}")  # a run killed before its manifest
    (tmp_path / ".manifest.json.x1y2.tmp").write_text("{")
    RunDir(tmp_path).check_new_or_own()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no run"):
        RunDir(tmp_path).check_new_or_own()
    (tmp_path / "manifest.json").write_text("{}")  # a run: resuming it is checked by run
    RunDir(tmp_path).check_new_or_own()


def test_identify_writes_only_the_files_it_is_given_or_derives_from_them(
        finished_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(finished_run[0], tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "stability.json").write_text("the user's own")
    before = {**tree(copy), **tree(tmp_path / "mine")}
    stats = str(copy / "stats.safetensors")
    for out in (copy / "alt.json", tmp_path / "mine" / "alt.json"):
        assert main(["identify", stats, "--out", str(out), "--share", "0.05"]) == 0
        assert (out.parent / "alt.stability.json").is_file()
    after = {**tree(copy), **tree(tmp_path / "mine")}
    assert {k: v for k, v in after.items() if not k.startswith("alt.")} == before
    assert main(["report", str(copy)]) == 0
    capsys.readouterr()
    before = tree(copy)
    for args, named in (
            (["--out", str(copy / "neurons.json")], f"--out {copy / 'neurons.json'}: a file of "
             f"the run in {copy} (its manifest.json lists it), which only `emoneuron run` "
             f"writes; choose another name, e.g. {copy / 'alt.json'}"),
            (["--out", str(copy / "b.json"), "--stability-out", str(copy / "stability.json")],
             f"--stability-out {copy / 'stability.json'}: a file of the run in {copy}"),
            (["--out", str(copy / "methods" / "lape" / "neurons.json")],
             f"--out {copy / 'methods' / 'lape' / 'neurons.json'}: a file of the run in {copy}"),
            (["--out", str(copy / "b.json"), "--stability-out", str(copy / "b.json")],
             f"--stability-out {copy / 'b.json'}: the same file as --out; give another, e.g. "
             f"{copy / 'b.stability.json'}")):
        assert main(["identify", stats, *args]) == 2
        assert _error(capsys).startswith(f"error: {named}")
        assert tree(copy) == before


# -- one owner at a time ------------------------------------------------------------------------

def test_a_live_owner_is_refused_and_a_dead_one_taken_over(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(finished_run[0], tmp_path)
    before = tree(copy)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "2024-01-01T00:00"}
        (copy / LOCK).write_text(json.dumps(lock))
        assert main(tiny_run_args(tiny_model_dir, copy, finished_run[1])) == 2
        assert (f"{copy}: in use by another `emoneuron run` (pid {sleeper.pid}@"
                f"{socket.gethostname()} since 2024-01-01T00:00)") in _error(capsys)
        assert json.loads((copy / LOCK).read_text()) == lock  # still the owner's
    finally:
        sleeper.kill()
        sleeper.wait()
    # The owner is gone: its lock is stale and taken over, then released.
    with RunDir(copy).locked():
        assert json.loads((copy / LOCK).read_text())["pid"] == os.getpid()
    assert f"taking over from pid {sleeper.pid}@" in capsys.readouterr().out
    assert tree(copy) == before


@pytest.mark.parametrize("pid", [2**70, 2**40, 0, -1])
def test_a_lock_of_a_pid_no_process_can_have_is_taken_over(
        tmp_path: Path, pid: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A pid beyond the system's range (once an OverflowError), or 0 and -1, which os.kill
    reads as process groups that always exist (once a refusal forever)."""
    lock = {"pid": pid, "host": socket.gethostname(), "started": "2024-01-01T00:00"}
    (tmp_path / LOCK).write_text(json.dumps(lock))
    with RunDir(tmp_path).locked():
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert f"taking over from pid {pid}@" in capsys.readouterr().out


def test_a_folder_where_the_lock_goes_is_refused_and_kept(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(finished_run[0], tmp_path)
    (copy / LOCK).mkdir()
    (copy / LOCK / "mine.txt").write_text("the user's own")
    before = tree(tmp_path)
    command = tiny_run_args(tiny_model_dir, copy, finished_run[1])
    capsys.readouterr()
    for refused in (command, ["ablate", str(copy), "--neurons", str(copy / "neurons.json"),
                              "--name", "again"]):
        assert main(refused) == 2
        assert _error(capsys) == (
            f"error: {copy / LOCK}: a folder where `emoneuron {refused[0]}` writes a file; move "
            "it out of the run directory and rerun")
        assert tree(tmp_path) == before
    (copy / LOCK).rename(tmp_path / "moved")  # as the message says
    with RunDir(copy).locked():
        pass


def test_the_directory_a_refused_out_suggests_can_be_run_into(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("mine too")
    with pytest.raises(UserError, match="holds no run") as refused:
        RunDir(tmp_path).check_new_or_own()
    suggested = Path(str(refused.value).rsplit("e.g. ", 1)[1])
    assert suggested == tmp_path / "run-2"
    RunDir(suggested).check_new_or_own()


def test_the_lock_is_released_on_an_error_and_an_interrupt(tmp_path: Path) -> None:
    for stop in (UserError("refused"), KeyboardInterrupt()):
        with pytest.raises(type(stop)), RunDir(tmp_path / "run").locked():
            assert (tmp_path / "run" / LOCK).is_file()
            raise stop
        assert not (tmp_path / "run").exists()  # created for the run, left empty: removed


# -- resume reuses what is done -------------------------------------------------------------------

def test_rerun_reuses_identification_stability_and_cards(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy(finished_run[0], tmp_path)
    reused = ("neurons.json", "stability.json", "cards/index.json", "shuffled/neurons-seed0.json")
    mtimes = {name: (copy / name).stat().st_mtime_ns for name in reused}

    def recomputed(*_: object, **__: object) -> None:
        raise AssertionError("recomputed although its inputs are unchanged")

    for name in ("write_stability", "write_cards", "shuffled_controls"):
        monkeypatch.setattr(f"emoneuron.app.run.{name}", recomputed)
    assert main(tiny_run_args(tiny_model_dir, copy, finished_run[1])) == 0
    assert {name: (copy / name).stat().st_mtime_ns for name in reused} == mtimes
    for name in ("effects.csv", "ablation.csv", "methods.csv", "neurons.json"):
        assert (copy / name).read_bytes() == (finished_run[0] / name).read_bytes(), name


def test_open_run_gives_every_table_and_every_method_s_sets_checked(
        finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    import pandas as pd

    import emoneuron
    from emoneuron.selection.neurons import NeuronSets

    run = _copy(finished_run[0], tmp_path)
    assert main(["ablate", str(run), "--neurons", str(run / "neurons.json"), "--name", "again",
                 "--quiet"]) == 0
    opened = emoneuron.open_run(run)
    written = sorted(path.relative_to(run).as_posix() for path in run.rglob("*.csv")
                     if not path.relative_to(run).as_posix().startswith("figures/"))
    assert sorted(f"{name}.csv" for name in opened.tables) == written
    assert {"setlevel", "ablation", "effects"} <= set(opened.tables)
    for name, frame in opened.tables.items():
        pd.testing.assert_frame_equal(frame, pd.read_csv(run / f"{name}.csv"))
    assert opened.sets == NeuronSets.load(run / "neurons.json")
    assert set(opened.methods) == {path.parent.name for path in run.glob("methods/*/neurons.json")}
    assert opened.methods["again"] == opened.sets
    assert opened.manifest == json.loads((run / "manifest.json").read_text())
    table = run / "setlevel.csv"
    table.write_text(table.read_text().replace("lape", "LAPE", 1))
    with pytest.raises(UserError, match=r"setlevel\.csv.*changed since the run wrote it"):
        emoneuron.open_run(run)
