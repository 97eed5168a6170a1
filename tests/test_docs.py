"""The documentation site: a page for every command, and an offline strict build."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from emoneuron.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}".strip()) or [f"{prefix} {name}".strip()]
    return found


def test_every_command_has_a_page_in_the_nav() -> None:
    commands = _commands(build_parser())
    assert {"run", "compare", "data synth", "models list"} <= set(commands)
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for command in commands:
        page = f"cli/{command.replace(' ', '-')}.md"
        assert (ROOT / "docs" / page).is_file(), f"no page {page} for `emoneuron {command}`"
        assert f"{command}: {page}" in nav, f"{page} is not in mkdocs.yml's nav"
        assert f"# emoneuron {command}" in (ROOT / "docs" / page).read_text(encoding="utf-8")


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="docs extra not installed (make docs installs it)")
def test_site_builds_strictly_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr
    compare = (tmp_path / "api" / "report" / "index.html").read_text(encoding="utf-8")
    assert "write_comparison" in compare and "wasserstein_1d" in compare  # from docstrings
    for page in tmp_path.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert 'src="http' not in text and 'src="//' not in text, page  # nothing fetched
