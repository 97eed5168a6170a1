"""The report's causal-validation section (emoneuron.reporting.causal_section): the controls table
of a fake run with known numbers, which figures are drawn, the near-chance marks, and the steering
verdicts."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from run_fixtures import make_run

from emoneuron.reporting import causal_section
from emoneuron.reporting.causal_section import (
    confusion_figure,
    controls_table,
    dose_figures,
    near_chance_emotions,
    steering_html,
    steering_verdicts,
    titled,
)
from emoneuron.reporting.results import load_results
from emoneuron.rundir import RunDir


def _names(figures: list[str]) -> Any:
    """A renderer that records the names of the figures it is asked for and draws none."""
    return lambda name, *_: figures.append(name) or f"<{name}>"


def test_the_controls_table_holds_each_emotions_tests(tmp_path: Path) -> None:
    make_run(tmp_path)
    specificity = pd.read_csv(tmp_path / "specificity.csv")
    html = controls_table(load_results(RunDir(tmp_path)), specificity, set())
    mask = pd.read_csv(tmp_path / "ablation.csv").query(
        "condition == 'mask' and masked_emotion == 'anger' and eval_emotion == 'anger'").iloc[0]
    interval = f"[{100 * mask.ci_low:.1f}%, {100 * mask.ci_high:.1f}%]"
    assert (f"<tr><td>anger</td><td>50</td><td>80.0%</td><td>35.0% {interval}</td>"
            "<td>0.060</td><td>79.0% (p 0.120)</td><td>+43.0 [-10.0, +30.0]</td><td></td>"
            "<td>-</td></tr>") in html
    assert "<th>random, layer-matched (p, Holm)</th>" in html
    # Only surprise rises beyond its interval when its neurons are removed (58% -> 71%).
    assert html.count("RISES under masking") == 1
    assert "beyond its interval for: surprise (58.0% -&gt; 71.0%).</b>" in html
    marked = controls_table(load_results(RunDir(tmp_path)), specificity, {"anger"})
    assert "<td>anger (near chance)</td>" in marked


def test_near_chance_emotions_are_read_from_the_self_rows() -> None:
    effects = pd.DataFrame({"masked_emotion": ["anger", "anger", "fear"],
                            "eval_emotion": ["anger", "fear", "fear"],
                            "near_chance": [True, True, False]})
    assert near_chance_emotions(effects) == {"anger"}
    assert near_chance_emotions(effects.drop(columns="near_chance")) == set()
    assert (titled("anger", {"anger"}), titled("fear", {"anger"})) == ("anger (near chance)",
                                                                       "fear")


def test_only_the_figures_a_run_has_data_for_are_drawn() -> None:
    figures: list[str] = []
    strength = pd.DataFrame({"variable": ["strength"]})
    assert dose_figures(strength, set(), _names(figures)) == "<dose_strength>"
    assert dose_figures(strength.assign(variable="proportion"), set(),
                        _names(figures)) == "<dose_proportion>"
    assert confusion_figure(pd.DataFrame(), _names(figures)) == "<confusion>"
    assert figures == ["dose_strength", "dose_proportion", "confusion"]
    assert dose_figures(None, set(), _names(figures)) == ""
    assert confusion_figure(None, _names(figures)) == ""
    assert len(figures) == 3


def _steering(p_anger: float, p_fear: float, with_control: bool = True) -> dict[str, Any]:
    def shares(share: float) -> dict[str, Any]:
        return {"classified_as_target": share, "classified_ci_low": 0.0,
                "classified_ci_high": 1.0, "lexicon_target_per_continuation": 0.0,
                "continuations": ["a", "b"]}
    emotions = {}
    for emotion, p in (("anger", p_anger), ("fear", p_fear)):
        result = {"none": shares(0.1), "emotion": shares(0.6), "n_neurons": 5}
        if with_control:
            result |= {"random": shares(0.1), "p_mcnemar_emotion_vs_random": p}
        emotions[emotion] = result
    return {"strength": 4.0, "new_tokens": 24, "dialogues": ["x"] * 12, "emotions": emotions}


def test_steering_verdicts_are_holm_corrected_across_the_emotions() -> None:
    # Raw 0.03 passes 0.05 alone; Holm's second step (x1) keeps it since anger's x2 is 0.008.
    assert steering_verdicts(_steering(0.004, 0.03)) == {
        "anger": (pytest.approx(0.008), "toward it beyond random neurons"),
        "fear": (pytest.approx(0.03), "toward it beyond random neurons")}
    # Raw 0.03 twice: Holm gives 0.06 to both, so neither is beyond random neurons.
    verdicts = steering_verdicts(_steering(0.03, 0.03))
    assert {v for _, v in verdicts.values()} == {"not distinguishable from random neurons"}
    html = steering_html(_steering(0.03, 0.03))
    assert "Holm across the 2 emotions" in html
    assert "toward it beyond random neurons for no emotion" in html


def test_steering_without_a_control_gives_no_verdict() -> None:
    html = steering_html(_steering(0.001, 0.001, with_control=False))
    assert "No verdict: steering has no control in this run" in html
    assert "beyond random neurons for" not in html


def test_doctests() -> None:
    assert doctest.testmod(causal_section).failed == 0
