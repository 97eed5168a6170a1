"""The HTML report: built from a small but realistic fake run directory."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from emoneuron.data.schema import EMOTIONS
from emoneuron.reporting.report import write_report

N_LAYERS, WIDTH = 30, 64
CHANCE = 1 / 6
# Self accuracy (on the emotion itself) with no neurons removed and with its neurons removed.
BASELINE = {"anger": 0.80, "disgust": 0.62, "fear": 0.74, "happiness": 0.90, "sadness": 0.22,
            "surprise": 0.58}
MASKED = {"anger": 0.35, "disgust": 0.60, "fear": 0.50, "happiness": 0.70, "sadness": 0.20,
          "surprise": 0.71}  # surprise rises when its neurons are removed
PEAKS = {"anger": 18, "disgust": 12, "fear": 20, "happiness": 16, "sadness": 24, "surprise": 8}
SEEDS = (0, 1, 2)
N_EVAL = 50
FIGURES = ("neurons_per_layer", "overlap", "self_effect", "drop_matrix", "excess_matrix",
           "sweep_heatmaps", "sweep_dose_response")


def _ci(acc: float) -> tuple[float, float]:
    half = 1.96 * np.sqrt(acc * (1 - acc) / N_EVAL)
    return max(0.0, acc - half), min(1.0, acc + half)


def _neurons(rng: np.random.Generator) -> dict[str, Any]:
    emotions: dict[str, list[dict[str, Any]]] = {}
    for k, emotion in enumerate(EMOTIONS):
        layers = np.clip(PEAKS[emotion] + rng.integers(-3, 4, size=5 + k), 0, N_LAYERS - 1)
        emotions[emotion] = [
            {"layer": int(layer), "index": int(rng.integers(WIDTH)), "score": 0.05 * rank + 0.01}
            for rank, layer in enumerate(layers)]
    # One neuron shared by anger and disgust, as the multi-assignment threshold allows.
    emotions["disgust"].append(dict(emotions["anger"][0], score=0.9))
    counts = np.diag([len(emotions[e]) for e in EMOTIONS])
    counts[0, 1] = counts[1, 0] = 1
    return {"model": "tiny-lm", "site": "mlp.act", "statistic": "entropy",
            "parameters": {"q": 0.005},
            "n_layers": N_LAYERS, "width": WIDTH, "emotions": emotions,
            "overlap": {"emotions": list(EMOTIONS), "counts": counts.tolist()}}


def _accuracy(masked: str, evaluated: str, seed: int | None) -> float:
    base = BASELINE[evaluated]
    if seed is not None:
        return base - 0.01 + 0.01 * (seed - 1)
    return MASKED[evaluated] if masked == evaluated else base - 0.02


def _ablation() -> pd.DataFrame:
    rows = []
    conditions = [("baseline", "", None)] + [("mask", m, None) for m in EMOTIONS] + [
        ("control", m, s) for m in EMOTIONS for s in SEEDS]
    for condition, masked, seed in conditions:
        for evaluated in EMOTIONS:
            acc = BASELINE[evaluated] if condition == "baseline" else _accuracy(
                masked, evaluated, seed)
            drop = BASELINE[evaluated] - acc
            spread = 0.0 if condition == "baseline" else 0.06
            rows.append({"condition": condition, "masked_emotion": masked,
                         "seed": "" if seed is None else seed, "eval_emotion": evaluated,
                         "n": N_EVAL, "accuracy": acc, "ci_low": _ci(acc)[0],
                         "ci_high": _ci(acc)[1],
                         "control_set": "random" if condition == "control" else "",
                         "drop": drop, "drop_ci_low": drop - spread,
                         "drop_ci_high": drop + spread})
    return pd.DataFrame(rows)


def _effects() -> pd.DataFrame:
    rows = []
    for masked in EMOTIONS:
        for evaluated in EMOTIONS:
            base, acc = BASELINE[evaluated], _accuracy(masked, evaluated, None)
            control = float(np.mean([_accuracy(masked, evaluated, s) for s in SEEDS]))
            excess = (base - acc) - (base - control)
            rows.append({"masked_emotion": masked, "eval_emotion": evaluated, "n": N_EVAL,
                         "baseline": base, "masked": acc, "control": control,
                         "mask_drop": base - acc, "control_drop": base - control,
                         "excess_drop": excess, "excess_ci_low": excess - 0.07,
                         "excess_ci_high": excess + 0.07,
                         "control_set": "random", "n_control_seeds": len(SEEDS),
                         "mask_drop_ci_low": base - acc - 0.06,
                         "mask_drop_ci_high": base - acc + 0.06,
                         "p_mcnemar_baseline": 0.01,
                         "p_exact_control": 0.0004 if abs(excess) > 0.07 else 0.62,
                         "p_mcnemar_baseline_holm": 0.06 if masked == evaluated else None,
                         "p_exact_control_holm": 0.12 if masked == evaluated else None,
                         "improves": base - acc + 0.06 < 0})
    return pd.DataFrame(rows)


def _specificity() -> pd.DataFrame:
    return pd.DataFrame([{"masked_emotion": e, "own_drop": BASELINE[e] - MASKED[e],
                          "mean_cross_drop": 0.02, "specificity": BASELINE[e] - MASKED[e] - 0.02,
                          "ci_low": -0.1, "ci_high": 0.3} for e in EMOTIONS])


def _sweep() -> pd.DataFrame:
    rows = []
    weight = {"bottom": 0.1, "middle": 0.6, "top": 0.3, "all": 1.0}
    for emotion in EMOTIONS:
        effect = BASELINE[emotion] - MASKED[emotion]
        for layer_range, w in weight.items():
            for proportion in (0.2, 0.4, 0.6, 0.8, 1.0):
                rows.append({"masked_emotion": emotion, "layer_range": layer_range,
                             "proportion": proportion, "n_masked": int(10 * proportion),
                             "eval_emotion": emotion, "n": N_EVAL,
                             "accuracy": BASELINE[emotion] - effect * w * proportion})
    # A cross-emotion row the heat maps must ignore.
    rows.append({"masked_emotion": "anger", "layer_range": "all", "proportion": 1.0,
                 "n_masked": 10, "eval_emotion": "fear", "n": N_EVAL, "accuracy": 0.0})
    return pd.DataFrame(rows)


def _manifest(model_name: str) -> dict[str, Any]:
    counts = {e: 40 for e in EMOTIONS}
    return {
        "emoneuron_version": "0.1.0", "created": "2025-06-01T12:00:00Z",
        "config": {"model": model_name, "seeds": list(SEEDS), "n_shot": 3, "quantile": 0.005},
        "model": {"name": model_name, "architecture": "LlamaForCausalLM", "family": "llama",
                  "n_layers": N_LAYERS, "width": WIDTH, "n_neurons": N_LAYERS * WIDTH,
                  "site": "mlp.act"},
        "data": {"hash": "abc123", "counts": {"identify": counts, "eval": counts,
                                              "fewshot": {e: 3 for e in EMOTIONS}}},
        "evaluation": {"description": "3-shot next-token choice among 6 labels", "n_shot": 3,
                       "chance": CHANCE},
        "versions": {"torch": "2.5.0", "numpy": "2.1.0"},
        "timings": {"identify": 12.5, "ablate": 40.0, "sweep": 100.0},
    }


def make_run(run_dir: Path, model_name: str = "tiny-lm", sweep: bool = True) -> dict[str, Any]:
    """Write a fake run directory; return the neurons payload for assertions."""
    run_dir.mkdir(parents=True, exist_ok=True)
    neurons = _neurons(np.random.default_rng(0))
    (run_dir / "manifest.json").write_text(json.dumps(_manifest(model_name)))
    (run_dir / "neurons.json").write_text(json.dumps(neurons))
    _ablation().to_csv(run_dir / "ablation.csv", index=False)
    _effects().to_csv(run_dir / "effects.csv", index=False)
    _specificity().to_csv(run_dir / "specificity.csv", index=False)
    if sweep:
        _sweep().to_csv(run_dir / "sweep.csv", index=False)
    return neurons


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


def test_verdicts_flag_specific_null_and_rising_emotions(run_dir: Path) -> None:
    page = write_report(run_dir).read_text(encoding="utf-8")
    summary = _section(page, "summary")
    assert "Specific effect (excess drop CI above 0): anger, fear, happiness." in summary
    assert "No effect distinguishable from random neurons: disgust, sadness." in summary
    assert re.search(r"Improves when its neurons are removed[^<]*: surprise\.", summary)
    assert "surprise: 58.0% → 71.0%" in summary
    tables = _section(page, "tables")
    assert re.search(r"<td>surprise</td>(<td>[^<]*</td>)*<td>improves when its neurons are "
                     r"removed</td>", tables)
    assert re.search(r"<td>anger</td>(<td>[^<]*</td>)*<td>specific effect</td>", tables)


def test_warns_when_baseline_is_near_chance(run_dir: Path) -> None:
    summary = _section(write_report(run_dir).read_text(encoding="utf-8"), "summary")
    warning = re.search(r'<p class="warn">([^<]*)</p>', summary)
    assert warning is not None
    assert "sadness (22.0%)" in warning.group(1)
    assert "anger" not in warning.group(1)


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
