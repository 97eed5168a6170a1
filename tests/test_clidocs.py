"""The command pages are the parser's (emoneuron.clidocs): every page's generated block equals
what the parser gives, so an option added without `make docs-cli` fails here."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoneuron import clidocs
from emoneuron.cli import build_parser
from emoneuron.errors import UserError
from emoneuron.reporting import captured, published, run_facts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pages() -> dict[Path, str]:
    return clidocs.pages(ROOT)


def test_every_command_page_is_the_parsers(pages: dict[Path, str]) -> None:
    stale = [str(path.relative_to(ROOT)) for path, text in pages.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"{stale} differ from the parser; run make docs-cli"


def test_every_command_has_its_generated_block(pages: dict[Path, str]) -> None:
    for command in clidocs.commands():
        path = ROOT / clidocs.PAGES / clidocs.page_of(command)
        specs = [spec for spec, _ in published.blocks(path.read_text(encoding="utf-8"))]
        assert specs == [f"cli {command}".strip()], path


def test_an_option_added_without_regenerating_shows(pages: dict[Path, str]) -> None:
    parser = build_parser()
    synth = clidocs.commands(parser)["data synth"][0]
    synth.add_argument("--dialect", default="british", help="spelling of the dialogues")
    changed = clidocs.pages(ROOT, parser)
    page = ROOT / clidocs.PAGES / "data-synth.md"
    assert changed[page] != pages[page]
    assert "| `--dialect DIALECT` | british | spelling of the dialogues |" in changed[page]
    assert {path for path in pages if changed[path] != pages[path]} == {page}


def test_prose_around_the_block_is_kept(tmp_path: Path) -> None:
    page = tmp_path / clidocs.PAGES / "report.md"
    page.parent.mkdir(parents=True)
    page.write_text("intro\n<!-- generated: cli report -->\nstale\n<!-- end generated -->\n"
                    "## More\nprose\n", encoding="utf-8")
    text = clidocs.pages(tmp_path)[page]
    assert text.startswith("intro\n<!-- generated: cli report -->\n# emoneuron report\n")
    assert text.endswith("<!-- end generated -->\n## More\nprose\n") and "stale" not in text
    assert "| `run_dir` | a run directory |" in text
    # a command without a page gets one holding only its block
    assert clidocs.pages(tmp_path)[page.with_name("run.md")].startswith(
        "<!-- generated: cli run -->\n# emoneuron run\n")


def test_a_block_naming_no_command_is_refused(tmp_path: Path) -> None:
    page = tmp_path / clidocs.PAGES / "run.md"
    page.parent.mkdir(parents=True)
    page.write_text("<!-- generated: cli rn -->\n<!-- end generated -->\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"'cli rn'.*give cli and one of the commands"):
        clidocs.pages(tmp_path)


def test_defaults_are_shown_as_the_parser_holds_them() -> None:
    parser = build_parser()
    synth = clidocs.commands(parser)["data synth"][0]
    synth.add_argument("--separator", default="\n", help="between turns")
    text = clidocs.pages(ROOT, parser)[ROOT / clidocs.PAGES / "data-synth.md"]
    assert "| `--separator SEPARATOR` | '\\n' | between turns |" in text  # visible, one line
    assert "| `--out OUT` | required |" in text and "| `--keyword-free` | off |" in text
    load = clidocs.pages(ROOT)[ROOT / clidocs.PAGES / "data-load.md"]
    assert "| `--id-column ID_COLUMN` |  |" in load  # None: no default
    assert "| `--turn-separator TURN_SEPARATOR` | a line break |" in load  # as its help says


def test_docstring_examples() -> None:
    assert doctest.testmod(clidocs).failed == 0
    assert doctest.testmod(published).failed == 0
    assert doctest.testmod(captured).failed == 0
    assert doctest.testmod(run_facts).failed == 0


def test_generating_the_pages_loads_no_model_library(tmp_path: Path) -> None:
    code = ("import json, sys; from emoneuron.clidocs import pages; pages(); "
            "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120, env=env, cwd=ROOT)
    assert json.loads(result.stdout.splitlines()[-1]) == []
