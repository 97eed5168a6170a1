"""What the file-safety tests share: a directory's content by path, and a tiny finished run's
command line.

A command that is refused (exit 2) must leave every file byte-identical and add none:
``tree(root)`` before and after says so, folders included (a refused command creates none).
"""

from __future__ import annotations

from pathlib import Path

from emoneuron.io import sha256_file

FOLDER = "folder"  # the value of a folder in tree(): a new or removed empty folder shows too


def tree(directory: Path) -> dict[str, str]:
    """Every file's sha256 and every folder under ``directory``, by relative path."""
    return {path.relative_to(directory).as_posix(): sha256_file(path) if path.is_file()
            else FOLDER for path in sorted(directory.rglob("*"))}


def tiny_run_args(model_dir: Path, out: Path, data: Path, *more: str) -> list[str]:
    """``emoneuron run`` of the tiny model on ``data`` in a few seconds: the smallest run that
    still writes every kind of file (a compared method, a shuffled control, dose and
    set-level conditions, cards, the probe and the report)."""
    return ["run", "--model", str(model_dir), "--out", str(out), "--data", str(data),
            "--max-turns", "2", "--share", "0.05", "--proportions", "1.0", "--no-sweep",
            "--no-steer", "--compare-methods", "lape", "--control-seeds", "0", "--controls",
            "random", "shuffled", "--dose-strengths", "0.5", "--quiet", "--threads", "1", *more]
