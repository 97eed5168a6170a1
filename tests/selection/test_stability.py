"""Bootstrap, shuffled-label null and agreement on hand-built recordings with known answers.

Planted neurons fire for one emotion in every group of that emotion; background neurons fire
about half the time for every emotion with independent noise per group. The bootstrap must find
the planted sets again and again, the null must find almost none of their quality, and on pure
noise the null must find about as many as the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emoneuron.cli import main
from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.recording.statistics import N_BINS, Recording
from emoneuron.selection.identify import IdentifyConfig
from emoneuron.selection.stability import (
    StabilityConfig,
    _bootstrap_weights,
    permuted_weights,
    stability,
    write_stability,
)

GROUPS, LAYERS, WIDTH, TOKENS = 8, 2, 50, 100
PLANTED = {"anger": [(0, 1), (0, 2), (1, 3), (1, 4), (1, 5)],
           "fear": [(0, 10), (0, 11), (1, 12), (1, 13), (1, 14)]}
CONFIG = IdentifyConfig(assignment="argmax", share=0.1, activity_quantile=0.5)  # 10 neurons


def _recording(planted: bool, empty_cells: tuple[tuple[int, int], ...] = ()) -> Recording:
    rng = np.random.default_rng(0)
    shape = (len(EMOTIONS), GROUPS, LAYERS, WIDTH)
    probability = rng.uniform(0.3, 0.7, size=shape)
    if planted:
        for emotion, neurons in PLANTED.items():
            for layer, index in neurons:
                probability[:, :, layer, index] = 0.05
                probability[EMOTIONS.index(emotion), :, layer, index] = 0.9
    tokens = np.full((len(EMOTIONS), GROUPS), float(TOKENS))
    for e, g in empty_cells:
        tokens[e, g] = 0
        probability[e, g] = 0
    active = np.round(probability * TOKENS)
    k = 3
    return Recording(
        tokens=torch.tensor(tokens), active=torch.tensor(active),
        sum=torch.tensor(active * 0.5), sum_sq=torch.tensor(active * 0.5),
        histogram=torch.zeros((len(EMOTIONS), LAYERS, WIDTH, N_BINS), dtype=torch.int32),
        top_values=torch.full((LAYERS, k, WIDTH), -torch.inf),
        top_dialogue=torch.zeros((LAYERS, k, WIDTH), dtype=torch.int64))


def test_planted_sets_are_stable_and_beat_the_null() -> None:
    report = stability(_recording(planted=True), CONFIG, StabilityConfig(20, 10), False)
    for emotion in PLANTED:
        row = report["emotions"][emotion]
        assert row["count"] == 5
        assert row["bootstrap_jaccard_to_full"]["p05"] == 1.0
        assert row["bootstrap_jaccard_pairwise_mean"] == 1.0
        assert row["null_count"]["mean"] < 1.0  # labels without meaning: almost nothing
    assert report["emotions"]["sadness"]["count"] == 0
    assert report["resamples"] == 20 and report["permutations"] == 10


def test_pure_noise_is_unstable_and_matched_by_the_null() -> None:
    report = stability(_recording(planted=False), CONFIG, StabilityConfig(20, 10), False)
    rows = report["emotions"].values()
    real = sum(row["count"] for row in rows)
    null = sum(row["null_count"]["mean"] for row in rows)
    assert real == 10
    assert null > 0.3 * real  # the rule finds "emotion neurons" in noise, and the null says so
    counted = [row for row in rows if row["count"] > 0]
    assert np.mean([row["bootstrap_jaccard_to_full"]["mean"] for row in counted]) < 0.6


def test_bootstrap_draws_each_emotions_own_non_empty_groups() -> None:
    recording = _recording(True, empty_cells=((0, 3), (2, 0), (2, 1)))
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        weights = _bootstrap_weights(recording, generator).view(len(EMOTIONS), len(EMOTIONS),
                                                                GROUPS)
        for e in range(len(EMOTIONS)):
            own = weights[e, e]
            assert own.sum() == int((recording.tokens[e] > 0).sum())
            assert not own[recording.tokens[e] == 0].any()
            assert weights[e].sum() == own.sum()  # nothing from other emotions


def test_permutation_relabels_every_non_empty_cell_once() -> None:
    recording = _recording(True, empty_cells=((1, 2),))
    weights = permuted_weights(recording, torch.Generator().manual_seed(2))
    non_empty = (recording.tokens.flatten() > 0)
    assert torch.equal(weights.sum(0), non_empty.double())
    assert torch.equal(weights.sum(1), (recording.tokens > 0).sum(1).double())
    assert not torch.equal(weights.view(len(EMOTIONS), len(EMOTIONS), GROUPS).diagonal().T,
                           (recording.tokens > 0).double())  # it did shuffle


def test_identity_weights_give_the_totals() -> None:
    recording = _recording(True)
    identity = torch.eye(len(EMOTIONS)).repeat_interleave(GROUPS, dim=1)
    combined, totals = recording.combined(identity), recording.stats()
    for name in ("tokens", "active", "sum", "sum_sq"):
        torch.testing.assert_close(getattr(combined, name), getattr(totals, name))
    assert combined.histogram is None and totals.histogram is not None


def test_agreement_matrix_and_auroc_without_resampling(tmp_path: Path) -> None:
    recording = _recording(True)
    report = write_stability(recording, IdentifyConfig(assignment="argmax",
                                                       statistic="auroc", share=0.1),
                             tmp_path / "stability.json", StabilityConfig(5, 2), False)
    assert report["resamples"] == 0 and "null_count" not in report["emotions"]["anger"]
    saved = json.loads((tmp_path / "stability.json").read_text())
    statistics = saved["agreement"]["statistics"]
    mean = saved["agreement"]["mean_over_emotions"]
    assert all(mean[i][i] == 1.0 for i in range(len(statistics)))
    lape, smd = statistics.index("lape"), statistics.index("smd")
    assert saved["agreement"]["jaccard"]["anger"][lape][smd] == 1.0  # both find the plant


def test_too_few_resamples_is_a_user_error() -> None:
    with pytest.raises(UserError, match="resamples"):
        StabilityConfig(resamples=1)


def test_cli_identify_writes_neurons_and_stability(tmp_path: Path) -> None:
    stats = tmp_path / "stats.safetensors"
    _recording(True).save(stats, {"model": "hand-built"})
    out = tmp_path / "neurons.json"
    assert main(["identify", str(stats), "--statistic", "welch", "--rule", "per-emotion",
                 "--top-n", "3", "--resamples", "4", "--permutations", "2",
                 "--out", str(out)]) == 0
    neurons = json.loads(out.read_text())
    assert (neurons["statistic"], neurons["rule"], neurons["site"]) == (
        "welch", "per-emotion", "mlp.down_proj.input")
    assert neurons["parameters"]["top_n"] == 3
    assert all(len(neurons["emotions"][e]) == 3 for e in EMOTIONS)
    stability_report = json.loads((tmp_path / "stability.json").read_text())
    assert stability_report["statistic"] == "welch" and stability_report["resamples"] == 4


def test_bootstrap_gives_each_sets_mean_relative_depth_with_an_interval() -> None:
    planted = stability(_recording(planted=True), CONFIG, StabilityConfig(20, 2), False)
    anger = planted["emotions"]["anger"]["mean_relative_depth"]
    # Two of anger's five planted neurons in layer 0 of 2, three in layer 1: (3 * 1/2) / 5.
    assert anger["estimate"] == pytest.approx(0.3)
    assert anger["ci_low"] == anger["ci_high"] == pytest.approx(0.3)  # found every time
    assert len(anger["resamples"]) == 20 and anger["empty_resamples"] == 0
    assert anger["interval"] == "percentile"  # what bench/depth_coverage.py measured
    assert planted["emotions"]["sadness"]["mean_relative_depth"]["estimate"] is None
    noise = stability(_recording(planted=False), CONFIG, StabilityConfig(40, 2), False)
    spread = [row["mean_relative_depth"] for row in noise["emotions"].values()
              if row["mean_relative_depth"]["estimate"] is not None]
    assert spread and all(d["ci_low"] <= d["estimate"] <= d["ci_high"] for d in spread)
    assert any(d["ci_high"] - d["ci_low"] > 0.1 for d in spread)  # unstable sets move
