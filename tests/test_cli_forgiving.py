"""A forgiving command line (issue 25, item 3): mistakes are refused at once, in one line, with
the likely fix; a closed pipe, a version question and a machine reader are served quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import emoneuron

SRC = Path(emoneuron.__file__).parents[1]  # the code under test, for a subprocess

# Runs the command line and prints, last, which heavy modules the process had imported.
WITH_IMPORTS = """
import json, sys
try:
    from emoneuron.cli import main
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = ("torch", "transformers", "emoneuron.pipeline")
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
