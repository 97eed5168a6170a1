"""Wall time of ``emoneuron`` commands that need no model, against a bare interpreter.

Each command runs in a fresh subprocess (median of 5): ``python -c pass`` as the baseline,
``emoneuron --help``, ``emoneuron run --help`` and ``emoneuron data stats FILE`` on 20
synthetic dialogues. Run: ``python bench/cli_startup.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emoneuron.data.schema import write_records
from emoneuron.data.synth import synthesize

REPEATS = 5
MAIN = "import sys; from emoneuron.cli import main; sys.exit(main(sys.argv[1:]))"


def median_seconds(arguments: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run([sys.executable, *arguments], capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "dialogues.jsonl"
        write_records(data, synthesize(4, seed=0, max_turns=2)[:20])
        commands = {"python -c pass (baseline)": ["-c", "pass"],
                    "emoneuron --help": ["-c", MAIN, "--help"],
                    "emoneuron run --help": ["-c", MAIN, "run", "--help"],
                    "emoneuron data stats FILE": ["-c", MAIN, "data", "stats", str(data)]}
        rows = {name: median_seconds(arguments) for name, arguments in commands.items()}
    print(f"| command | median of {REPEATS} (s) |\n|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
