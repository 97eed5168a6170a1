"""The HTML report: built from a small but realistic fake run directory."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import BASELINE, MASKED, N_LAYERS, WIDTH, make_run

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.report import existence_summary, timing_rows, write_report
from emoneuron.reporting.setlevel_section import effect_sweep_html

FIGURES = ("neurons_per_layer", "overlap", "self_effect", "drop_matrix", "excess_matrix",
           "sweep_heatmaps", "sweep_dose_response")


def _section(page: str, section_id: str) -> str:
    return page.split(f'<section id="{section_id}">')[1].split("</section>")[0]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    make_run(tmp_path)
    return tmp_path


def test_report_is_self_contained_with_every_figure(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert re.findall(r"<script[^>]*>", page) == ["<script>"]  # the inline table sorter
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES)
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert page.count("<figcaption>") == len(FIGURES)
    for name in FIGURES:
        png, svg = run_dir / "figures" / f"{name}.png", run_dir / "figures" / f"{name}.svg"
        assert png.read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in svg.read_bytes()
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_summary_states_the_real_numbers(run_dir: Path) -> None:
    neurons = make_run(run_dir)
    summary = _section(write_report(run_dir).read_text(encoding="utf-8"), "summary")
    distinct = {(n["layer"], n["index"]) for ns in neurons["emotions"].values() for n in ns}
    assert f"In total {len(distinct)} distinct neurons" in summary
    assert f"{100 * len(distinct) / (N_LAYERS * WIDTH):.2f}% of the 1,920 neurons" in summary
    assert "1 of them is selected for several emotions" in summary
    assert f"anger {len(neurons['emotions']['anger'])}," in summary
    assert "anger: 80.0% → 35.0% with its neurons removed" in summary
    assert "chance 16.7%" in summary
    peak_counts = np.bincount([n["layer"] for n in neurons["emotions"]["fear"]], minlength=30)
    assert f"fear: peak at layer {int(np.argmax(peak_counts))}" in summary
    assert "bottom 0-9, middle 10-19, top 20-29" in summary


def test_the_near_chance_warning_is_the_wilson_rule_of_every_other_mark(run_dir: Path) -> None:
    """The summary once warned for a baseline within 10 points of chance (sadness, 22%) while
    the tables and figures marked the emotions whose Wilson lower bound reaches chance."""
    effects = pd.read_csv(run_dir / "effects.csv")
    own = effects.masked_emotion == effects.eval_emotion
    effects["near_chance"] = own & (effects.masked_emotion == "disgust")
    effects.to_csv(run_dir / "effects.csv", index=False)
    summary = _section(write_report(run_dir).read_text(encoding="utf-8"), "summary")
    warning = summary.split('<p class="warn">')[1].split("</p>")[0]
    assert warning.startswith("Warning: baseline accuracy is near chance for disgust (62.0%) ")
    assert "sadness" not in warning


def test_verdicts_come_from_the_set_level_table_only(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    summary = _section(page, "summary")
    assert ("lape: own-emotion drop beyond random sets for anger (+43.0 [+31.0, +55.0] "
            "points, p(Holm) 0.001), fear (+22.0 [+10.0, +34.0] points, p(Holm) 0.001); acts "
            "while reading the dialogue for anger." in summary)
    assert "p-values are Holm-adjusted, intervals 95% and clipped to the possible range" in summary
    assert "Holm-corrected across the six emotions" in summary
    assert "surprise: 58.0% → 71.0%" in summary
    tables = _section(page, "tables")
    assert re.search(r"<td>anger</td>(<td>[^<]*</td>)*<td>beyond random sets</td>", tables)
    assert re.search(r"<td>surprise</td>(<td>[^<]*</td>)*<td>not distinguishable from random "
                     r"sets</td>", tables)
    set_level = _section(page, "set-level")
    assert re.search(r"<td>fear</td>(<td>[^<]*</td>)*<td>acts at the answer</td>", set_level)
    assert "p(Holm) 0.001: beyond random sets" in set_level
    # Without the set-level table there is no verdict at all, whatever effects.csv says.
    (run_dir / "setlevel.csv").unlink()
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "no verdict is given" in _section(page, "summary")
    assert "beyond random sets" not in page and "specific effect" not in page


def test_tables_and_run_details(run_dir: Path) -> None:
    neurons = make_run(run_dir)
    page = write_report(run_dir).read_text(encoding="utf-8")
    top = neurons["emotions"]["surprise"][0]
    assert f"<td>{top['layer']}</td><td>{top['index']}</td><td>0.010</td>" in _section(
        page, "tables")
    details = _section(page, "details")
    assert "3-shot next-token choice among 6 labels" in details
    assert "<td>ablate</td><td>40.0</td>" in details
    assert "<td>seeds</td><td>[0, 1, 2]</td>" in details
    assert "<td>total</td><td>240</td><td>240</td><td>18</td>" in details


def test_missing_sweep_renders_a_note(tmp_path: Path) -> None:
    make_run(tmp_path)
    write_report(tmp_path)  # an earlier report with a sweep
    (tmp_path / "sweep.csv").unlink()
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == len(FIGURES) - 2
    assert "No layer-range x proportion sweep in this run" in page
    assert not (tmp_path / "figures" / "sweep_heatmaps.png").exists()
    assert (tmp_path / "figures" / "excess_matrix.svg").stat().st_size > 0


def test_html_special_characters_are_escaped(tmp_path: Path) -> None:
    make_run(tmp_path, model_name='<script>alert("x")</script> & co')
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page


def test_controls_section_flags_emotions_that_rise(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    controls = _section(page, "controls")
    rising = [e for e in EMOTIONS if MASKED[e] - BASELINE[e] > 0.06]
    assert rising, "the fixture must contain a rising emotion"
    assert controls.count("RISES under masking") == len(rising)
    for emotion in rising:
        assert f"{emotion} ({100 * BASELINE[emotion]:.1f}% -&gt; " in controls
    assert "McNemar" in controls and "Holm" in controls
    assert "No steering in this run" in _section(page, "steering")


@pytest.mark.parametrize(("timings", "totals"), [
    ({"record": 2.0, "ablation": 3.0}, [["total", "5.0"]]),
    ({"record": 2.0, "ablation": 3.0, "total_before_report": 5.5},
     [["total before the report", "5.5"]]),
    ({"record": 2.0, "ablation": 3.0, "total_before_report": 5.5, "report": 4.0, "total": 9.5},
     [["total before the report", "5.5"], ["total", "9.5"]]),
])
def test_the_timings_table_shows_the_runs_totals_once(timings: dict[str, float],
                                                      totals: list[list[str]]) -> None:
    # A report once summed the run's own totals with its stages (1908.5 s for a 638.7 s run).
    rows = timing_rows(timings)
    stages = [k for k in timings if not k.startswith("total")]
    assert [row[0] for row in rows[:len(stages)]] == stages
    assert rows[len(stages):] == totals


def test_the_effect_sweep_table_names_each_part_and_its_verdict() -> None:
    sweep = pd.DataFrame([{"method": "lape", "masked_emotion": "anger", "layer_range": "top",
                           "proportion": 0.5, "n_neurons": 12, "k_random_sets": 20,
                           "excess": 0.4, "ci_low": 0.2, "ci_high": 0.6, "p_holm": 0.004,
                           "verdict": "beyond random sets"}])
    html = effect_sweep_html(sweep)
    for text in ("lape: where each effect lives", "<td>anger</td><td>top</td><td>50.0%</td>",
                 "+40.0 [+20.0, +60.0], p(Holm) 0.004", "beyond random sets"):
        assert text in html, text
    assert "no part of one is localised" in effect_sweep_html(sweep.iloc[:0])
    assert effect_sweep_html(None) == ""


def test_question_a_leads_with_the_shuffled_label_null_and_stability(run_dir: Path) -> None:
    neurons = make_run(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stability = {"permutations": 20, "resamples": 50, "emotions": {
        e: {"count": len(neurons["emotions"][e]), "null_count": {"mean": 1.5, "max": 4},
            "bootstrap_jaccard_to_full": {"mean": 0.8, "p05": 0.7, "p95": 0.9}}
        for e in EMOTIONS}}
    answer = existence_summary(neurons, manifest, stability)
    assert "anger: 5 neurons (shuffled labels 1.5 (max 4)); bootstrap Jaccard 0.80 [0.70, " \
           "0.90]." in answer
    assert answer.index("shuffled-label selections") < answer.index("In total")
    assert "by construction, so a count alone is no evidence" in answer
    assert "No stability test in this run" in existence_summary(neurons, manifest, None)


def test_set_level_tables_show_each_sets_size(run_dir: Path) -> None:
    set_level = _section(write_report(run_dir).read_text(encoding="utf-8"), "set-level")
    assert "<th>neurons in the set</th>" in set_level
    assert re.search(r"<td>anger</td><td>6</td><td>\+", set_level)
