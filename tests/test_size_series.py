"""The size question in numbers: the extra-corpus baseline (real computation on a tiny model),
the run's parameter count and depth bootstrap, the comparison's trend with parameter count and
pairwise distances over four runs, the size preset and the series' refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import N_LAYERS, make_run

from emoneuron.app.run import run
from emoneuron.app.series import SeriesConfig, timing_table
from emoneuron.causal.evaluation.baseline import baseline_table, sample_per_emotion
from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.inference.summaries import BALANCED, CORPUS_WEIGHTED, OVERALL
from emoneuron.config import PRESETS, preset_config
from emoneuron.data.schema import EMOTIONS, NEUTRAL, Record, Turn, write_records
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel, load
from emoneuron.reporting.comparison_page import write_comparison
from emoneuron.reporting.comparison_stats import (
    distance_table,
    load_runs,
    per_emotion_table,
    size_trend,
    spearman,
)

# An unbalanced corpus, as real ones are: many of one emotion, few of another, neutral most.
AVAILABLE = {"anger": 3, "disgust": 1, "fear": 2, "happiness": 9, "sadness": 4, "surprise": 5,
             NEUTRAL: 12}
WORDS = {"anger": "furious", "disgust": "gross", "fear": "scared", "happiness": "glad",
         "sadness": "crying", "surprise": "wow", NEUTRAL: "okay"}


def _corpus() -> list[Record]:
    return [Record(f"{label}-{k}", label, (Turn("A", f"I am {WORDS[label]} number {k}"),
                                           Turn("B", "I see.")), "test")
            for label, n in AVAILABLE.items() for k in range(n)]


def _shots() -> list[Record]:
    return [Record(f"shot-{e}", e, (Turn("A", f"so {WORDS[e]}"),), "test") for e in EMOTIONS]


def test_extra_baseline_caps_each_emotion_and_keeps_the_real_counts(
        make_word_tiny: Callable[[str], LoadedModel]) -> None:
    classifier = Classifier(make_word_tiny("qwen2"), _shots(), batch_size=4)
    corpus = _corpus()
    table = baseline_table(classifier, corpus, per_emotion=3, seed=0).set_index("emotion")
    for label, n in AVAILABLE.items():
        assert table.loc[label, "available"] == n
    assert table.loc[NEUTRAL, "n"] == 0  # counted, never evaluated
    assert [int(table.loc[e, "n"]) for e in EMOTIONS] == [3, 1, 2, 3, 3, 3]
    # The same predictions, recomputed here from the classifier on the sampled records.
    sampled = sample_per_emotion(corpus, 3, seed=0)
    scores = classifier.predict(sampled)
    for emotion in EMOTIONS:
        assert table.loc[emotion, "correct"] == sum(
            EMOTIONS[int(s.argmax())] == emotion
            for r, s in zip(sampled, scores, strict=True) if r.emotion == emotion)
    assert table.loc[OVERALL, "n"] == 15
    assert table.loc[OVERALL, "correct"] == sum(int(table.loc[e, "correct"]) for e in EMOTIONS)
    accuracies = [table.loc[e, "accuracy"] for e in EMOTIONS]
    assert table.loc[BALANCED, "accuracy"] == pytest.approx(np.mean(accuracies))
    weights = np.array([AVAILABLE[e] for e in EMOTIONS]) / sum(AVAILABLE[e] for e in EMOTIONS)
    assert table.loc[CORPUS_WEIGHTED, "accuracy"] == pytest.approx(float(weights @ accuracies))
    for emotion in EMOTIONS:
        row = table.loc[emotion]
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    again = baseline_table(classifier, corpus, per_emotion=3, seed=0)
    pd.testing.assert_frame_equal(again.set_index("emotion"), table)  # the draw is seeded


def test_run_evaluates_baseline_data_apart_and_records_its_size(tmp_path: Path,
                                                                tiny_model_dir: Path) -> None:
    extra = tmp_path / "corpus.jsonl"
    write_records(extra, _corpus())
    config = preset_config("size", model=str(tiny_model_dir), per_emotion=8, share=0.05,
                           batch_size=8, baseline_data=str(extra), baseline_per_emotion=2)
    out = tmp_path / "run"
    run(config, out, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    loaded = load(str(tiny_model_dir))
    assert manifest["model"]["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert "baseline_extra.csv" in manifest["files"]
    assert manifest["timings"]["baseline_extra"] >= 0
    table = pd.read_csv(out / "baseline_extra.csv").set_index("emotion")
    assert table.loc[NEUTRAL, "available"] == 12 and table.loc["happiness", "n"] == 2
    identified = {json.loads(line)["id"]
                  for line in (out / "data" / "identify.jsonl").read_text().splitlines()}
    assert identified and not identified & {r.id for r in _corpus()}  # not in identification
    ablation = pd.read_csv(out / "ablation.csv")
    assert set(ablation["condition"]) == {"baseline", "mask", "control"}  # the size preset
    stability = json.loads((out / "stability.json").read_text())
    for emotion in EMOTIONS:
        depth = stability["emotions"][emotion]["mean_relative_depth"]
        assert len(depth["resamples"]) == stability["resamples"]
        if depth["estimate"] is not None and depth["ci_low"] is not None:
            assert depth["ci_low"] <= depth["estimate"] <= depth["ci_high"]


# Four fake runs: two of one family at two sizes, the deeper placement in the larger model.
SIZES = {"small-lm": ("llama", 1e6, 0), "mid-lm": ("gemma3", 3e6, 0),
         "qwen-small": ("qwen2", 5e8, 0), "qwen-large": ("qwen2", 1.5e9, 6)}


def _sized_run(directory: Path, name: str) -> None:
    family, parameters, shift = SIZES[name]
    make_run(directory, model_name=name)
    neurons = json.loads((directory / "neurons.json").read_text())
    for listed in neurons["emotions"].values():
        for neuron in listed:
            neuron["layer"] = min(N_LAYERS - 1, neuron["layer"] + shift)
    (directory / "neurons.json").write_text(json.dumps(neurons))
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["model"] |= {"family": family, "parameters": parameters}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    rng = np.random.default_rng(len(name))
    emotions = {}
    for emotion in EMOTIONS:
        depths = [n["layer"] / N_LAYERS for n in neurons["emotions"][emotion]]
        estimate = float(np.mean(depths))
        resamples = (estimate + rng.normal(0, 0.02, size=40)).tolist()
        emotions[emotion] = {"mean_relative_depth": {
            "estimate": estimate, "ci_low": float(np.quantile(resamples, 0.025)),
            "ci_high": float(np.quantile(resamples, 0.975)), "resamples": resamples}}
    (directory / "stability.json").write_text(json.dumps({"emotions": emotions}))


@pytest.fixture
def four_runs(tmp_path: Path) -> list[Path]:
    directories = [tmp_path / name for name in SIZES]
    for directory in directories:
        _sized_run(directory, directory.name)
    return directories


def test_every_pair_of_four_runs_has_its_distances_pooled_too(four_runs: list[Path]) -> None:
    runs = load_runs(four_runs)
    distances = distance_table(runs)
    pairs = set(zip(distances["run_a"], distances["run_b"], strict=True))
    assert len(pairs) == 6
    assert len(distances) == 6 * (len(EMOTIONS) + 1)
    same = distances[(distances["run_a"] == "small-lm") & (distances["run_b"] == "mid-lm")]
    assert (same["wasserstein"] == 0).all()  # identical placements
    shifted = distances[(distances["run_a"] == "qwen-small") & (distances["run_b"] == "qwen-large")]
    assert (shifted["wasserstein"] > 0).all()


def test_trend_follows_parameter_count_and_the_family_pair(four_runs: list[Path]) -> None:
    runs = load_runs(four_runs)
    frame = per_emotion_table(runs)
    for row in frame.itertuples():
        assert row.mean_relative_depth_ci_low <= row.mean_relative_depth
        assert row.mean_relative_depth <= row.mean_relative_depth_ci_high
    assert set(frame["parameters"]) == {p for _, p, _ in SIZES.values()}
    trend = size_trend(runs, frame)
    assert set(trend["statistic"]) == {"n_neurons", "share_of_neurons", "mean_relative_depth",
                                       "baseline", "baseline_extra"}
    assert set(trend["pair"]) == {"qwen-small -> qwen-large"}
    depth = trend[trend["statistic"] == "mean_relative_depth"].set_index("emotion")
    for emotion in EMOTIONS:
        row = depth.loc[emotion]
        assert row["n_models"] == 4
        assert row["pair_change"] > 0  # layers moved up in the larger model
        assert row["pair_ci_low"] <= row["pair_change"] <= row["pair_ci_high"]
        # Only the largest model is deeper: ranks 1, 1, 1, 4 (ties) against 1, 2, 3, 4.
        assert row["spearman_log_parameters"] == pytest.approx(spearman([1, 2, 3, 4],
                                                                        [0, 0, 0, 1]))
        assert row["slope_per_tenfold_parameters"] > 0
    baseline = trend[trend["statistic"] == "baseline"].set_index("emotion")
    assert (baseline["pair_change"] == 0).all()  # the same fake baseline in every run
    assert (baseline["pair_ci_low"] < 0).all() and (baseline["pair_ci_high"] > 0).all()
    share = trend[trend["statistic"] == "share_of_neurons"]
    assert share["pair_ci_low"].isna().all()  # a count has no interval here


def test_comparison_writes_trend_distances_and_both_baselines(four_runs: list[Path],
                                                              tmp_path: Path) -> None:
    extra = pd.DataFrame({
        "emotion": [*EMOTIONS, NEUTRAL, OVERALL], "available": [5] * 6 + [90, 30],
        "n": [5] * 6 + [0, 30], "correct": [3] * 6 + [0, 18],
        "accuracy": [0.6] * 6 + [np.nan, 0.6], "ci_low": [0.2] * 6 + [np.nan, 0.4],
        "ci_high": [0.9] * 6 + [np.nan, 0.8]})
    extra.to_csv(four_runs[-1] / "baseline_extra.csv", index=False)
    html = write_comparison(four_runs, tmp_path / "cmp").read_text(encoding="utf-8")
    assert len(pd.read_csv(tmp_path / "cmp" / "distances.csv")) == 6 * 7
    trend = pd.read_csv(tmp_path / "cmp" / "size_trend.csv")
    assert len(trend) == len(EMOTIONS) * 5
    frame = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    large = frame[frame["run"] == "qwen-large"]
    assert (large["baseline_extra"] == 0.6).all() and (large["baseline_extra_available"] == 5).all()
    assert frame[frame["run"] == "small-lm"]["baseline_extra"].isna().all()
    assert 'id="baselines"' in html and 'id="size-trend"' in html
    assert "no significance is claimed" in html
    assert "60.0% [20.0%, 90.0%]" in html


def test_size_preset_validates_and_stays_small() -> None:
    config = preset_config("size")
    assert config.preset == "size" and not config.sweep and not config.steer
    assert config.design.controls == ("random",) and config.design.control_seeds == (0,)
    assert config.compare_methods == () and config.prompt_choice == "fixed"
    assert config.design.dose_strengths == () and PRESETS["size"]["per_emotion"] == 30
    with pytest.raises(UserError, match="--baseline-per-emotion 0"):
        preset_config("size", baseline_per_emotion=0)


def test_series_refuses_unknown_or_single_models_and_tables_timings() -> None:
    with pytest.raises(UserError, match="--models tiny: not an embedded model"):
        SeriesConfig(models=("tiny", "smollm2-135m"))
    with pytest.raises(UserError, match="at least two"):
        SeriesConfig(models=("smollm2-135m",))
    table = timing_table([{"model": "a", "record": 12.0, "sweep": None, "total": 20.0},
                          {"model": "bb", "record": 130.25, "sweep": None, "total": 300.0}])
    assert table.splitlines() == ["model  record  total", "a        12.0   20.0",
                                  "bb      130.2  300.0"]
