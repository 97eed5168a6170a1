"""The report's judged steering, rendered from its tables (``steering_judges.csv`` and
``.json``): the verdict lines come from the table's Holm-adjusted verdicts, and where there is
no null there is no verdict."""

from __future__ import annotations

import doctest
import math
from typing import Any

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting import steering_section
from emoneuron.reporting.steering_section import judged_steering_html

VERDICT = {True: "steers toward the emotion beyond random",
           False: "not distinguishable from random"}


def _judged(draws: int, toward: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    rows = []
    for unit in ("neurons", "direction"):
        for judge in ("probe", "lexicon"):
            for emotion in EMOTIONS:
                found = emotion in toward.get((unit, judge), [])
                tested = draws >= 2
                rows.append({
                    "unit": unit, "judge": judge, "emotion": emotion, "size": 3,
                    "null": "nulls", "n_continuations": 12, "null_draws": draws,
                    "unsteered_share": 0.0, "share": 0.75 if found else 0.1,
                    "share_ci_low": 0.45, "share_ci_high": 0.9,
                    "null_mean_share": 0.05 if tested else math.nan,
                    "excess": 0.7 if tested else math.nan, "ci_low": 0.4 if tested else math.nan,
                    "ci_high": 0.9 if tested else math.nan,
                    "p_holm": (0.01 if found else 0.6) if tested else math.nan,
                    "verdict": VERDICT[found] if tested else "no verdict without controls",
                    "toward": found and tested, "lexicon_words_per_continuation":
                        1.5 if judge == "lexicon" else math.nan})
    return pd.DataFrame(rows)


def _description(draws: int) -> dict[str, Any]:
    samples = {e: {"unsteered": ["I'm not sure."], "its direction": ["<b>so happy</b>"]}
               for e in EMOTIONS}
    return {"null_draws": draws, "direction_layers": [7, 8], "alpha": 5.25,
            "alpha_rule": "the spread over the layers", "dialogues": ["A: hi\nB: hello"] * 12,
            "new_tokens": 24, "strength": 4.0,
            "nulls": {"neurons": "random sets", "direction": "random directions"},
            "judge_layer": 8, "judge_layer_rule": "the best", "samples": samples,
            "probe_accuracy_at_judge_layer": 0.9}


def test_judged_steering_states_a_verdict_per_unit_and_judge() -> None:
    toward = {("direction", "probe"): ["anger", "fear"], ("neurons", "lexicon"): ["sadness"]}
    html = judged_steering_html(_judged(4, toward), _description(4))
    assert ("probe judge (Holm across the 6 emotions, family-wise 0.05): adding its direction "
            "steers the continuations toward the emotion beyond random for anger, fear.") in html
    assert ("lexicon judge (Holm across the 6 emotions, family-wise 0.05): amplifying its "
            "neurons steers the continuations toward the emotion beyond random for sadness."
            ) in html
    assert "amplifying its neurons steers the continuations toward the emotion beyond random " \
           "for no emotion" in html  # the probe judge of neurons
    assert html.count("<caption>") == 4  # a table per unit and judge
    assert "alpha 5.25" in html and "residual layers 7, 8" in html
    assert "&lt;b&gt;so happy&lt;/b&gt;" in html and "<b>so" not in html
    assert judged_steering_html(None, _description(4)) == ""


def test_judged_steering_without_nulls_gives_no_verdict() -> None:
    html = judged_steering_html(_judged(0, {}), _description(0))
    assert html.count("no verdict without controls (no null draws") == 4
    assert "beyond random for" not in html


def test_the_modules_examples_hold() -> None:
    assert doctest.testmod(steering_section).failed == 0
