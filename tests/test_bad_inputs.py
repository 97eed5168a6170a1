"""Bad inputs a careless or hostile user gives: each is one line and exit code 2, before any work.

Output paths are checked before anything is computed, so a wrong ``--out`` costs nothing; caches
that cannot be written are skipped with a warning; data rows that would silently change meaning
are refused with file:line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from emoneuron.cli import main
from emoneuron.data.schema import Record, write_records
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.cache import cached_record

ROOT = os.geteuid() == 0
needs_permissions = pytest.mark.skipif(ROOT, reason="root ignores file permissions")


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "data.jsonl"
    write_records(path, synthesize(2, 0, 2))
    return path


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    """The error line (libraries may print warnings before it) and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# -- output paths -----------------------------------------------------------------------------

# Each command with its ``--out`` last; ``DATA`` and ``MODEL`` are replaced by real inputs.
FILE_OUTPUTS: dict[str, list[str]] = {
    "record": ["record", "--model", "MODEL", "--data", "DATA", "--out"],
    "identify": ["identify", "STATS", "--out"],
    "data load": ["data", "load", "DATA", "--format", "jsonl", "--out"],
    "data synth": ["data", "synth", "--per-emotion", "2", "--out"],
    "data keyword-free": ["data", "keyword-free", "DATA", "--out"],
    "evaluate": ["evaluate", "--model", "MODEL", "--per-emotion", "1", "--out"],
}
DIR_OUTPUTS: dict[str, list[str]] = {
    "run": ["run", "--model", "MODEL", "--per-emotion", "8", "--max-turns", "2", "--quiet",
            "--out"],
    "compare": ["compare", "RUN_A", "RUN_B", "--out"],
}


def _argv(template: list[str], out: Path, inputs: dict[str, Path]) -> list[str]:
    return [str(inputs.get(word, word)) for word in template] + [str(out)]


@pytest.fixture
def inputs(data_file: Path, tiny_model_dir: Path, tmp_path: Path) -> dict[str, Path]:
    return {"DATA": data_file, "MODEL": tiny_model_dir, "STATS": tmp_path / "stats.safetensors",
            "RUN_A": tmp_path / "a", "RUN_B": tmp_path / "b"}


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return _error(capsys)


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_a_directory_given_for_an_output_file_is_refused_before_any_work(
        command: str, inputs: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "existing-dir"
    out.mkdir()
    error = _refused(_argv(FILE_OUTPUTS[command], out, inputs), capsys)
    assert error == (f"error: --out {out}: is a directory; give a file name, "
                     f"e.g. {out / 'out.json'}")
    assert not any(out.iterdir())


@pytest.mark.parametrize("command", DIR_OUTPUTS)
def test_a_file_given_for_an_output_directory_is_refused(
        command: str, inputs: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "existing-file"
    out.write_text("mine\n")
    error = _refused(_argv(DIR_OUTPUTS[command], out, inputs), capsys)
    assert error.startswith(f"error: --out {out}: is a file, not a directory")
    assert out.read_text() == "mine\n"


@pytest.mark.parametrize("command", ["data synth", "run"])
def test_an_output_under_a_regular_file_is_refused(
        command: str, inputs: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("mine\n")
    out = blocker / "deeper" / "out.jsonl"
    template = {**FILE_OUTPUTS, **DIR_OUTPUTS}[command]
    error = _refused(_argv(template, out, inputs), capsys)
    assert error == (f"error: --out {out}: {blocker} is a file, so no directory can be made "
                     "under it; choose another path")


@needs_permissions
@pytest.mark.parametrize("command", ["data load", "data synth", "data keyword-free", "identify",
                                     "compare", "run"])
def test_an_output_in_a_read_only_directory_is_refused(
        command: str, inputs: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out = locked / "out"
    try:
        error = _refused(_argv({**FILE_OUTPUTS, **DIR_OUTPUTS}[command], out, inputs), capsys)
    finally:
        locked.chmod(0o755)
    assert error == (f"error: --out {out}: {locked} is not writable; choose a directory you "
                     "can write to")
    assert not any(locked.iterdir())


def test_output_checks_accept_new_and_existing_paths(tmp_path: Path) -> None:
    from emoneuron.io import check_output_dir, check_output_file

    (tmp_path / "there.json").write_text("{}")
    for check, path in ((check_output_file, tmp_path / "new" / "deeper" / "x.json"),
                        (check_output_file, tmp_path / "there.json"),
                        (check_output_dir, tmp_path / "new-run"),
                        (check_output_dir, tmp_path)):
        check(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.json"]  # checks create nothing



# -- caches that cannot be written ---------------------------------------------------------------

def _unwritable_cache(tmp_path: Path, kind: str) -> Path:
    """A cache root nothing can be written under: a regular file (even root cannot make folders
    under one), or a read-only folder."""
    root = tmp_path / "cache"
    if kind == "a file":
        root.write_text("not a folder\n")
    else:
        root.mkdir()
        root.chmod(0o555)
    return root


CACHE_KINDS = ["a file", pytest.param("read-only", marks=needs_permissions)]


@pytest.mark.parametrize("kind", CACHE_KINDS)
def test_a_recording_the_cache_cannot_hold_is_returned_with_a_warning(
        kind: str, make_tiny: Callable[[str], LoadedModel], records: list[Record],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from emoneuron.recording.config import RecordConfig
    from emoneuron.recording.recorder import record

    monkeypatch.setenv("EMONEURON_CACHE", str(_unwritable_cache(tmp_path, kind)))
    loaded = make_tiny("gpt2")
    got = cached_record(loaded, records, RecordConfig(batch_size=4), progress=False)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: {tmp_path / 'cache'}/stats/")
    assert "going on without caching" in warning[0]
    expected = record(loaded, records, RecordConfig(batch_size=4), progress=False)
    for name in ("tokens", "active", "sum", "sum_sq", "histogram", "top_values"):
        assert torch.equal(getattr(got, name), getattr(expected, name))


@pytest.mark.parametrize("kind", CACHE_KINDS)
def test_a_conversion_the_cache_cannot_hold_loads_from_a_temporary_folder(
        kind: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from emoneuron.models import loading

    monkeypatch.setenv("EMONEURON_CACHE", str(_unwritable_cache(tmp_path, kind)))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    # The real conversion de-quantises a GGUF file; a copy of the tiny model stands for it.
    monkeypatch.setattr(loading, "_convert_gguf",
                        lambda _, out_dir: shutil.copytree(tiny_model_dir, out_dir))
    loaded = loading.load(str(gguf))
    assert loaded.directory is not None and (loaded.directory / "config.json").is_file()
    assert not loaded.directory.is_relative_to(tmp_path)
    warning = capsys.readouterr().err.strip().splitlines()[0]  # transformers' bars follow it
    assert warning == (f"warning: {tmp_path / 'cache' / 'models'}: cannot write to the cache "
                       f"({'Not a directory' if kind == 'a file' else 'Permission denied'}); "
                       "going on without caching (set EMONEURON_CACHE to a writable directory "
                       "to keep results)")


def test_run_with_an_unwritable_cache_finishes_and_keeps_its_recording(
        tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EMONEURON_CACHE", str(_unwritable_cache(tmp_path, "a file")))
    out = tmp_path / "run"
    assert main(["run", "--model", str(tiny_model_dir), "--out", str(out), "--per-emotion", "8",
                 "--max-turns", "2", "--share", "0.05", "--proportions", "1.0", "--quiet",
                 "--threads", "1", "--control-seeds", "0", "--no-sweep", "--no-steer",
                 "--compare-methods", "lape", "--prompt-choice", "fixed"]) == 0
    assert "going on without caching" in capsys.readouterr().err
    assert (out / "stats.safetensors").is_file() and (out / "report.html").is_file()


# -- strengths that make activations infinite ----------------------------------------------------

TINY_RUN = ["--per-emotion", "8", "--max-turns", "2", "--share", "0.05", "--quiet", "--threads",
            "1", "--control-seeds", "0", "--controls", "random", "--no-sweep", "--no-steer",
            "--compare-methods", "lape", "--prompt-choice", "fixed", "--dose-strengths", "0"]


@pytest.mark.parametrize(("options", "message"), [
    (["--mode", "amplify", "--strength", "1e308"], "--strength 1e+308: above the largest "
     "float32 value (3.403e+38), so the changed activations would be infinite; give a smaller "
     "strength"),
    (["--mode", "clamp", "--strength=-1e39"], "--strength -1e+39: above the largest float32"),
    (["--dose-strengths", "0", "4e38"], "--dose-strengths 4e+38: above the largest float32"),
])
def test_a_strength_no_activation_can_hold_is_refused_before_any_work(
        options: list[str], message: str, tiny_model_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["run", "--model", str(tiny_model_dir), "--out", str(out), *TINY_RUN, *options]
    assert _refused(argv, capsys).startswith(f"error: {message}")
    assert not out.exists()


def test_non_finite_scores_stop_the_run_before_any_table(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A finite strength that still overflows inside the model (its down projections scaled by
    1e30: the unchanged model stays finite, amplified neurons reach infinity and the next norm
    makes NaN of it). NaN scores would make every prediction one label, every table
    meaningless."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.down_proj.weight *= 1e30
    loud = tmp_path / "loud-llama"
    model.save_pretrained(loud)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(loud)
    out = tmp_path / "run"
    assert main(["run", "--model", str(loud), "--out", str(out), *TINY_RUN,
                 "--mode", "amplify", "--strength", "1e20"]) == 2
    error = _error(capsys)
    assert error.startswith("error: the model's scores are not finite (NaN or infinite) with "
                            "mode amplify, strength 1e+20 on "), error
    assert error.endswith("; use a smaller --strength in a new --out directory")
    assert not any((out / name).exists() for name in ("effects.csv", "ablation.csv",
                                                      "report.html", "methods.csv"))
    stored = (out / "conditions.jsonl").read_text().splitlines()
    assert stored and all('"mode": "amplify"' not in line for line in stored)


# -- data rows that would silently change meaning ------------------------------------------------

TURNS = [{"speaker": "A", "text": "We won the match!"}]


@pytest.mark.parametrize(("row", "message"), [
    ({"id": None, "emotion": "anger", "turns": TURNS},
     "'id' must be a non-empty string or an integer, got null; give every record a unique id"),
    ({"id": "", "emotion": "anger", "turns": TURNS},
     "'id' must be a non-empty string or an integer, got \"\"; give every record a unique id"),
    ({"id": ["a"], "emotion": "anger", "turns": TURNS},
     "'id' must be a non-empty string or an integer, got [\"a\"]; give every record a unique id"),
    ({"id": "r1", "emotion": None, "turns": TURNS},
     "'emotion' must be a label string such as \"anger\", got null; label the record or "
     "remove it"),
])
def test_a_null_id_or_label_is_refused_with_its_line(
        row: dict[str, object], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = tmp_path / "records.jsonl"
    good = {"id": "r0", "emotion": "joy", "turns": TURNS}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    assert _refused(["data", "stats", str(path)], capsys) == f"error: {path}:2: {message}"


def test_integer_ids_are_still_read_as_strings(tmp_path: Path) -> None:
    from emoneuron.data.schema import read_records

    path = tmp_path / "records.jsonl"
    path.write_text('{"id": 7, "emotion": "joy", "turns": [{"text": "hi"}]}\n')
    assert [r.id for r in read_records(path)] == ["7"]


def test_a_csv_row_with_more_fields_than_the_header_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("text,emotion\nWe won!,joy\nI lost my keys, again,sadness\n")
    out = tmp_path / "records.jsonl"
    error = _refused(["data", "load", str(path), "--format", "csv", "--out", str(out)], capsys)
    assert error == (f"error: {path}:3: 3 fields where the header has 2; quote fields that "
                     "contain commas and close every opened quote")
    assert not out.exists()


@pytest.mark.parametrize("progress", [False, True])
def test_a_quiet_load_shows_no_loading_bar_and_leaves_the_bars_as_they_were(
        progress: bool, tiny_model_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    from emoneuron.models.loading import load

    assert hf_logging.is_progress_bar_enabled()
    load(str(tiny_model_dir), progress=progress)
    assert ("Loading weights" in capfd.readouterr().err) is progress
    assert hf_logging.is_progress_bar_enabled()
