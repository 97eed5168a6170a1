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
