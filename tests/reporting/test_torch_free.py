"""`emoneuron report` and `emoneuron compare` only read a run's files: in a fresh process they load
neither torch nor transformers (the import contracts in pyproject.toml check the imports; this
checks what a real report and comparison load), and a report whose figures are already drawn
loads no matplotlib either (most of its start-up time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src"
MODEL_LIBRARIES = ("torch", "transformers")
HEAVY_LIBRARIES = (*MODEL_LIBRARIES, "matplotlib")


def loaded_by(argv: list[str], libraries: tuple[str, ...] = MODEL_LIBRARIES) -> list[str]:
    """The ``libraries`` in ``sys.modules`` after ``emoneuron ARGV`` ran in a fresh process."""
    code = ("import json, sys; from emoneuron.cli import main; "
            f"status = main({argv!r}); "
            f"print(json.dumps([status, [m for m in {libraries!r} if m in sys.modules]]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=300, env=env)
    status, loaded = json.loads(result.stdout.splitlines()[-1])
    assert status == 0, result.stderr
    return list(loaded)


@pytest.fixture
def two_runs(finished_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    copies = tmp_path / "a", tmp_path / "b"
    for copy in copies:
        shutil.copytree(finished_run[0], copy)
    return copies


def test_report_loads_no_model_library(two_runs: tuple[Path, Path]) -> None:
    run = two_runs[0]
    (run / "report.html").unlink()
    assert loaded_by(["report", str(run)], HEAVY_LIBRARIES) == []  # every figure reused
    page = (run / "report.html").read_text(encoding="utf-8")
    (run / "figures" / "overlap.png").unlink()  # one figure to draw again: matplotlib, for it
    assert loaded_by(["report", str(run)], HEAVY_LIBRARIES) == ["matplotlib"]
    assert (run / "figures" / "overlap.png").is_file()
    assert (run / "report.html").read_text(encoding="utf-8") == page


def test_compare_loads_no_model_library(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "compare"
    assert loaded_by(["compare", *map(str, two_runs), "--out", str(out)]) == []
    assert (out / "compare.html").stat().st_size > 0
