"""A small but realistic fake run directory (manifest, neurons, ablation, effects,
specificity, sweep) for the report, compare and size-series tests: ``make_run(DIR)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.data.schema import EMOTIONS

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
    return {"model": "tiny-lm", "site": "mlp.act", "statistic": "entropy", "rule": "global",
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


# Set-level results of the run's own sets: anger and fear beyond random sets at every position,
# anger also while reading the dialogue, fear only at the answer.
BEYOND_AT = {"all": ("anger", "fear"), "dialogue": ("anger",), "last": ("anger", "fear")}


def _set_level() -> pd.DataFrame:
    rows = []
    for scope, beyond in BEYOND_AT.items():
        for emotion in EMOTIONS:
            excess = BASELINE[emotion] - MASKED[emotion] - 0.02
            found = emotion in beyond
            reading = ("acts while reading and at the answer" if emotion == "anger"
                       else "acts at the answer" if emotion == "fear" else "neither")
            rows.append({"run_method": True, "method": "lape", "scope": scope,
                         "statistic": "own", "masked_emotion": emotion, "n_neurons": 6,
                         "n_dialogues": N_EVAL, "k_random_sets": 20, "set_drop": excess + 0.02,
                         "random_mean_drop": 0.02, "random_sd": 0.03, "excess": excess,
                         "ci_low": excess - 0.12, "ci_high": excess + 0.12,
                         "p": 0.0002 if found else 0.4, "rank_p": 1 / 21,
                         "min_detectable_excess": 0.15, "p_holm": 0.001 if found else 0.8,
                         "verdict": "beyond random sets" if found
                         else "not distinguishable from random sets",
                         "beyond": found, "reading": reading})
    return pd.DataFrame(rows)


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
    _set_level().to_csv(run_dir / "setlevel.csv", index=False)
    if sweep:
        _sweep().to_csv(run_dir / "sweep.csv", index=False)
    return neurons
