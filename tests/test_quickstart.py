"""The top-level `emoneuron` names of the quick start: cheap, the real objects, examples."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import emoneuron

QUICK_START = {
    "load": "emoneuron.models.loading",
    "synthesize": "emoneuron.data.synth",
    "record": "emoneuron.recording.recorder",
    "identify": "emoneuron.selection.identify",
    "IdentifyConfig": "emoneuron.selection.identify",
    "Ablation": "emoneuron.causal.intervene",
    "applied": "emoneuron.causal.intervene",
    "RunConfig": "emoneuron.config",
    "run": "emoneuron.pipeline",
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
