"""The documentation: a page for every command, module paths that exist, an architecture page
that names every module, a short README, and an offline strict build."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emoneuron.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOTTED = re.compile(r"\bemoneuron(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
TEST_PATH = re.compile(r"\btests/[\w/]*?\w+\.py")


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


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _module_of(dotted: str) -> tuple[str, list[str]] | None:
    """The longest prefix of ``dotted`` that is a module, and the names after it."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            if importlib.util.find_spec(".".join(parts[:end])) is not None:
                return ".".join(parts[:end]), parts[end:]
        except ModuleNotFoundError:  # a prefix that is not a package, e.g. emoneuron.app.run.run
            continue
    return None


def _top_level_names(module: str) -> set[str]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    names: set[str] = set()
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                names.update(ast.literal_eval(node.value))  # lazily imported names too
    return names


def test_every_module_path_in_the_docs_exists() -> None:
    missing = []
    for page in _pages():
        for dotted in sorted(set(DOTTED.findall(page.read_text(encoding="utf-8")))):
            found = _module_of(dotted)
            if found is None or (found[1] and found[1][0] not in _top_level_names(found[0])):
                missing.append(f"{page.relative_to(ROOT)}: {dotted}")
    assert not missing, "named but not in src/emoneuron:\n" + "\n".join(missing)


def test_module_path_check_catches_a_stale_name() -> None:
    assert _module_of("emoneuron.htmlpage") == ("emoneuron", ["htmlpage"])
    assert "htmlpage" not in _top_level_names("emoneuron")
    assert "record" in _top_level_names("emoneuron.recording.recorder")


def test_every_test_file_named_in_the_docs_and_code_exists() -> None:
    texts = [*_pages(), ROOT / "BENCHMARKS.md", *sorted((ROOT / "src").rglob("*.py"))]
    missing = [f"{text.relative_to(ROOT)}: {path}" for text in texts
               for path in sorted(set(TEST_PATH.findall(text.read_text(encoding="utf-8"))))
               if not (ROOT / path).is_file()]
    assert not missing, "named but not in tests/:\n" + "\n".join(missing)


def test_tests_are_laid_out_like_the_package() -> None:
    """Each folder of tests/ is a subpackage of emoneuron, so a stage's tests sit in its name."""
    subpackages = {p.name for p in (ROOT / "src" / "emoneuron").iterdir()
                   if (p / "__init__.py").is_file()}
    folders = {p.name for p in (ROOT / "tests").iterdir()
               if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders == subpackages


def test_architecture_names_every_module() -> None:
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / "src" / "emoneuron"
    unnamed = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if f"`{module}`" not in architecture:
            unnamed.append(module)
    assert not unnamed, f"docs/architecture.md does not name {unnamed}"


def test_readme_is_short_opens_with_demo_and_test_and_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    commands = [line.split("#")[0].strip() for line in readme.splitlines()
                if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        assert target.startswith("http") or (ROOT / target).exists(), target


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
