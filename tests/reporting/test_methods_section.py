"""The report's method comparison and statement of what ran
(emoneuron.reporting.methods_section), rendered from a small methods.csv and a fake run's
manifest."""

from __future__ import annotations

import doctest
import json
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from run_fixtures import make_run

from emoneuron.causal.inference.significance import min_detectable_drop
from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting import methods_section
from emoneuron.reporting.methods_section import methods_html, methods_summary, run_statement


def _methods() -> pd.DataFrame:
    """methods.csv of two methods whose sets differ in size: lape 160-172, auroc 70-84."""
    rows = []
    for rank, (method, low, high) in enumerate((("lape", 160, 172), ("auroc", 70, 84)), 1):
        sizes = [low, *[(low + high) / 2] * 4, high]
        for emotion, size in zip(("mean", *EMOTIONS), ((low + high) / 2, *sizes), strict=True):
            rows.append({"rank": rank, "method": method, "label": method,
                         "run_method": method == "lape", "masked_emotion": emotion,
                         "n_neurons": size, "own_drop": 0.2, "control_drop": 0.05,
                         "cross_drop": 0.02, "specific_excess_drop": 0.13, "ci_low": 0.0,
                         "ci_high": 0.26, "near_chance": False})
    return pd.DataFrame(rows)


def test_the_method_comparison_says_how_large_each_methods_sets_are() -> None:
    html = methods_html(_methods(), lambda *_: "")
    assert ("Set sizes differ: lape 166 neurons per emotion (160-172), auroc 77 (70-84); a "
            "larger set can remove more for its size alone.") in html




def test_the_ranking_names_the_best_method_and_the_runs_own() -> None:
    methods = _methods()
    assert escape("lape's sets matter most: mean specific excess drop +13.0 points [+0.0, "
                  "+26.0], and they are this run's own selection") in methods_summary(methods)
    # auroc's sets matter more than the run's own lape sets: the gap is said in points.
    methods.loc[methods.method == "auroc", ["rank", "specific_excess_drop"]] = (0, 0.2)
    assert escape("auroc's sets matter most: mean specific excess drop +20.0 points [+0.0, "
                  "+26.0], 7.0 points more than this run's own selection (lape, +13.0 [+0.0, "
                  "+26.0])") in methods_summary(methods)
    assert methods_summary(None) == ""


def test_the_tables_hold_each_methods_drops_and_the_figure_is_rendered() -> None:
    methods = _methods()
    methods.loc[(methods.method == "auroc") & (methods.masked_emotion == "fear"),
                "near_chance"] = True
    figures: list[str] = []
    html = methods_html(methods, lambda name, *_: figures.append(name) or f"<{name}>")
    assert figures == ["methods"] and html.endswith("<methods>")
    assert ("<tr><td>1</td><td>lape</td><td>lape (this run&#x27;s)</td><td>166</td>"
            "<td>+20.0</td><td>+5.0</td><td>+2.0</td><td>+13.0 [+0.0, +26.0]</td></tr>") in html
    assert "<th>fear (near chance)</th>" in html
    assert html.count("<td>+13.0 [+0.0, +26.0]</td>") == 2 + 2 * len(EMOTIONS)
    assert "No method comparison in this run" in methods_html(None, lambda *_: "")


def _manifest(tmp_path: Path, **config: Any) -> dict[str, Any]:
    make_run(tmp_path)
    manifest: dict[str, Any] = json.loads((tmp_path / "manifest.json").read_text())
    manifest["config"] |= config
    return manifest


def test_the_statement_says_the_runs_size_and_the_drop_it_can_detect(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, preset="demo")
    detectable = f"{100 * min_detectable_drop(40, 0.8):.0f} points"
    statement = run_statement(manifest, 0.8)
    assert statement.startswith(f"<p>Quick demo: too small to detect effects below {detectable} "
                                "(40 held-out dialogues per emotion; ")
    assert "at a baseline of 80%" in statement and "Prompt:" not in statement
    manifest["config"]["preset"] = "study"
    assert run_statement(manifest, 0.8).startswith("<p>Study-size run (40 held-out")
    manifest["config"].pop("preset")
    assert run_statement(manifest, 0.8).startswith("<p>Custom run (40 held-out")


def test_the_statement_says_how_the_prompt_was_chosen(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    variants = [{"style": "plain", "calibrate": True, "worst": 0.4, "worst_emotion": "fear",
                 "mean": 0.7}, {"style": "chat", "calibrate": False, "worst": 0.3,
                                "worst_emotion": "disgust", "mean": 0.75}]
    manifest["evaluation"]["prompt_choice"] = {"style": "plain", "calibrate": True,
                                               "per_emotion": 12, "variants": variants}
    assert ("Prompt: plain, calibrated, the variant whose worst emotion scored best on up to 12 "
            "identification dialogues per emotion (plain, calibrated: worst 40% (fear), mean "
            "70%; chat: worst 30% (disgust), mean 75%).</p>") in run_statement(manifest, 0.8)


def test_doctests() -> None:
    assert doctest.testmod(methods_section).failed == 0
