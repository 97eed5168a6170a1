"""Bad `run` and `data synth` options: one line, exit code 2, nothing written, no model loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoneuron.cli import main

BAD_RUN_OPTIONS = (
    (["--shots", "-1"], "--shots -1"),
    (["--per-emotion", "-3"], "--per-emotion -3"),
    (["--max-turns", "0"], "--max-turns 0"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--eval-fraction", "1.5"], "--eval-fraction 1.5"),
    (["--proportions", "2"], "--proportions 2"),
    (["--control-seeds", "0", "0"], "--control-seeds 0 0"),
    (["--other-control-seeds", "-1"], "--other-control-seeds -1"),
    (["--sweep-eval", "bogus"], "--sweep-eval 'bogus'"),
    (["--steer-strength", "nan"], "--steer-strength nan"),
    (["--dose-strengths", "nan"], "--dose-strengths nan"),
    (["--strength", "inf", "--mode", "clamp"], "--strength inf"),
    (["--mode", "scale", "--strength", "2"], "mode scale attenuates"),
    (["--device", "bogus"], "--device 'bogus'"),
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--threads", "0"], "--threads 0"),
    (["--threads", "99999999999"], "--threads 99999999999"),
    # Combinations and values that once passed the config and failed after the model loaded
    # and the identification split was recorded (issue 24, item 8).
    (["--selection", "auroc"], "--controls random frequency least shuffled: the shuffled-label "
                               "control permutes per-group statistics"),
    (["--statistic", "auroc"], "--controls random frequency least shuffled: "),
    (["--preset", "demo", "--selection", "auroc"], "leave shuffled out, e.g. --controls random "
                                                   "frequency least"),
    (["--control-seeds", "-1"], "--control-seeds -1: a seed is a whole number from 0 to "),
    (["--control-seeds", "0", "99999999999999999999999"], "--control-seeds 0 999"),
    (["--seed", "-1"], "--seed -1: a seed is a whole number"),
    (["--group-seed", "-1"], "--group-seed -1: a seed is a whole number"),
)


@pytest.mark.parametrize(("options", "named"), BAD_RUN_OPTIONS,
                         ids=[" ".join(o) for o, _ in BAD_RUN_OPTIONS])
def test_a_bad_run_option_is_one_line_before_anything_is_written(
        options: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # A model that does not exist: the option must be refused before any loading is tried.
    assert main(["run", "--model", str(tmp_path / "no-model"), "--out", str(out),
                 *options]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], captured.err
    assert not out.exists()


@pytest.mark.parametrize(("options", "named"), [(["--per-emotion", "-3"], "--per-emotion -3"),
                                                (["--max-turns", "0"], "--max-turns 0")])
def test_a_bad_synth_option_is_one_line(options: list[str], named: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth.jsonl"
    assert main(["data", "synth", "--out", str(out), *options]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0]
    assert not out.exists()


def test_run_names_a_config_of_the_wrong_type(tmp_path: Path) -> None:
    from emoneuron.app.run import run

    with pytest.raises(TypeError, match="run: config must be a RunConfig, got 'demo'"):
        run("demo", tmp_path / "run")  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()
