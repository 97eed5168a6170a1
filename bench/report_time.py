"""Wall time of ``emoneuron report RUN_DIR`` in a fresh process: every figure drawn (the
baseline, as a first report draws them) against every figure reused (issue 26's target: under
2 s on 2 cores), each on its own copy of the run, so the run itself is never touched.

A third row splits the reused report: the interpreter with the reporting imports alone.
Prints a markdown table and the machine it ran on. Run:
``python bench/report_time.py runs/demo``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

from cli_startup import REPEATS, median_seconds  # bench/, on the path when run as a script

REPORT = "import sys; from emoneuron.cli import main; sys.exit(main(['report', sys.argv[1]]))"
IMPORTS = "import emoneuron.cli, emoneuron.reporting.report"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory (copied, not changed)")
    run = parser.parse_args().run_dir
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "run"
        shutil.copytree(run, copy)
        figures = copy / "figures"

        def without_figures() -> None:
            shutil.rmtree(figures, ignore_errors=True)

        drawn = median_seconds(["-c", REPORT, str(copy)], before=without_figures)
        reused = median_seconds(["-c", REPORT, str(copy)])
        imports = median_seconds(["-c", IMPORTS])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; run {run}\n")
    print(f"| `emoneuron report` | median of {REPEATS} (s) | ratio to drawn |\n|---|---|---|")
    for name, seconds in (("every figure drawn (baseline)", drawn),
                          ("every figure reused", reused),
                          ("reporting imports only", imports)):
        print(f"| {name} | {seconds:.2f} | {seconds / drawn:.2f} |")


if __name__ == "__main__":
    main()
