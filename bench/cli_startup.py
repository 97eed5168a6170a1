"""Wall time of ``emoneuron`` commands that need no model, against a bare interpreter.

Each command runs in a fresh subprocess (median of 5): ``python -c pass`` as the baseline,
``emoneuron --help``, ``emoneuron run --help``, ``emoneuron data stats FILE`` on 20 synthetic
dialogues, and two ``run`` command lines refused for a bad option (a value out of range, an
unknown model), which must be refused before the pipeline imports torch (target: < 1 s).
Prints a markdown table and the machine it ran on. Run: ``python bench/cli_startup.py``.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from emoneuron.data.schema import write_records
from emoneuron.data.synth import synthesize

REPEATS = 5
MAIN = "import sys; from emoneuron.cli import main; sys.exit(main(sys.argv[1:]))"


def median_seconds(arguments: list[str], exit_code: int = 0,
                   before: Callable[[], None] | None = None) -> float:
    """The median wall time of ``python ARGUMENTS``, each run checked to exit ``exit_code`` (a
    refusal that came from somewhere else would time the wrong thing); ``before`` runs before
    each, untimed."""
    times = []
    for _ in range(REPEATS):
        if before is not None:
            before()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                              check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != exit_code:
            raise SystemExit(f"{arguments}: exit {done.returncode}, not {exit_code}: "
                             f"{done.stderr.strip()}")
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "dialogues.jsonl"
        write_records(data, synthesize(4, seed=0, max_turns=2)[:20])
        out = str(Path(folder) / "run")
        commands = {"python -c pass (baseline)": (["-c", "pass"], 0),
                    "emoneuron --help": (["-c", MAIN, "--help"], 0),
                    "emoneuron run --help": (["-c", MAIN, "run", "--help"], 0),
                    "emoneuron data stats FILE": (["-c", MAIN, "data", "stats", str(data)], 0),
                    "emoneuron run --per-emotion -3 (refused)": (
                        ["-c", MAIN, "run", "--per-emotion", "-3", "--out", out], 2),
                    "emoneuron run --model nope (refused)": (
                        ["-c", MAIN, "run", "--model", "nope", "--out", out], 2)}
        rows = {name: median_seconds(*command) for name, command in commands.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| command | median of {REPEATS} (s) |\n|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
