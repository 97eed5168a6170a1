"""The top-level `emoneuron` names of the quick start: cheap, the real objects, examples."""

from __future__ import annotations

import doctest
import functools
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import emoneuron
from emoneuron.config import RunConfig
from emoneuron.data.schema import read_records
from emoneuron.io import read_json
from emoneuron.layout import MANIFEST, NEURONS, data_file
from emoneuron.recording.config import RecordConfig
from emoneuron.selection.config import DEFAULT_SELECTION, SELECTION_METHODS, IdentifyConfig
from emoneuron.selection.neurons import NeuronSets

README = Path(__file__).resolve().parents[1] / "README.md"

QUICK_START = {
    "load": "emoneuron.models.loading",
    "synthesize": "emoneuron.data.synth",
    "record": "emoneuron.recording.recorder",
    "identify": "emoneuron.selection.identify",
    "IdentifyConfig": "emoneuron.selection.identify",
    "Ablation": "emoneuron.causal.evaluation.intervene",
    "applied": "emoneuron.causal.evaluation.intervene",
    "RunConfig": "emoneuron.config",
    "run": "emoneuron.app.run",
}


def test_import_emoneuron_leaves_torch_and_transformers_out() -> None:
    code = ("import sys, emoneuron; print(emoneuron.__version__, "
            "sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.split() == [emoneuron.__version__, "[]"]


@pytest.mark.parametrize("name", sorted(QUICK_START))
def test_quick_start_name_is_the_object_of_its_module(name: str) -> None:
    assert name in emoneuron.__all__
    assert getattr(emoneuron, name) is getattr(importlib.import_module(QUICK_START[name]), name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'recorder'"):
        emoneuron.recorder  # noqa: B018


@pytest.mark.parametrize("name", sorted(QUICK_START))
def test_quick_start_docstring_has_a_passing_example(name: str) -> None:
    tests = doctest.DocTestFinder(recurse=False).find(getattr(emoneuron, name), name,
                                                       globs=vars(emoneuron) | {
                                                           n: getattr(emoneuron, n)
                                                           for n in QUICK_START})
    assert tests and tests[0].examples, f"{name} has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_package_docstring_example_passes() -> None:
    assert doctest.testmod(emoneuron, verbose=False).failed == 0


def test_the_defaults_are_the_default_selection_methods() -> None:
    method = SELECTION_METHODS[DEFAULT_SELECTION]
    assert IdentifyConfig() == method.config
    assert RecordConfig().site == method.site
    assert (RunConfig().identify, RunConfig().record) == (IdentifyConfig(), RecordConfig())


def _quick_start() -> str:
    """The README's Python quick start, without its last line (a whole run of another model)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    lines = code.group(1).rstrip().splitlines()
    assert lines[-1].startswith("emoneuron.run(")
    return "\n".join(lines[:-1])


def test_the_readme_quick_start_selects_the_sets_run_selects(
        finished_run: tuple[Path, Path], tiny_model_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick start's calls, on the tiny model and the run's identification split with the
    run's share, pick the neurons `emoneuron run` picked (same site, statistic, assignment)."""
    run_dir, _ = finished_run
    manifest = read_json(run_dir / MANIFEST)
    identification = read_records(run_dir / data_file("identify"))
    real_load = emoneuron.load

    def load(name: str) -> Any:
        assert name == "smollm2-135m"
        return real_load(str(tiny_model_dir))

    monkeypatch.setattr(emoneuron, "load", load)
    monkeypatch.setattr(emoneuron, "synthesize", lambda *_, **__: identification)
    monkeypatch.setattr(emoneuron, "IdentifyConfig", functools.partial(
        IdentifyConfig, share=manifest["config"]["identify"]["share"]))
    namespace: dict[str, Any] = {}
    exec(compile(_quick_start(), str(README), "exec"), namespace)
    ran = NeuronSets.load(run_dir / NEURONS)
    found = namespace["sets"]
    assert (found.site, found.config) == (ran.site, ran.config)
    assert sum(map(len, ran.emotions.values())) > 0
    for emotion, neurons in ran.emotions.items():
        assert [(n.layer, n.index) for n in found.emotions[emotion]] == [
            (n.layer, n.index) for n in neurons]
        assert [n.score for n in found.emotions[emotion]] == pytest.approx(
            [n.score for n in neurons])
