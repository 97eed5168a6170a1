"""bench/gpu_size_series.py, prepared on the CPU for a one-shot GPU run: its ``--smoke`` mode
runs the whole script (speed measurement, a timed pipeline run, the table) on a tiny model, so
the device run fails on nothing but the device. One model keeps it fast: with several, the script
adds write_comparison, tested in reporting/test_comparison_page.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_run_writes_the_table(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "series"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_size_series.py"), "--smoke",
                    "--out", str(out), "--batch", "4", "--models", str(tiny_model_dir)],
                   check=True, capture_output=True, text=True)
    table = (out / "gpu-size-series.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(f"| {tiny_model_dir.name}")]
    assert "Size series on CPU" in table and len(rows) == 1
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[3]) > 0 and cells[5].endswith("x") and int(cells[8]) > 0
        assert float(cells[9]) > 0  # conditions per second
    assert (out / f"0-{tiny_model_dir.name}" / "report.html").exists()
