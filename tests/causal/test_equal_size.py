"""The method comparison at equal set size (``--equal-size``) on a tiny model run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emoneuron.app.run import run
from emoneuron.causal.experiments.equal_size import EQUAL
from emoneuron.config import preset_config
from emoneuron.data.schema import EMOTIONS
from emoneuron.selection.neurons import NeuronSets

# The run's own LAPE keeps 20% of the tiny model's neurons, the compared `lape` 1%: the run's
# sets are cut to the compared method's sizes. No probe, sweep or steering: not what is tested.
OPTIONS = {"per_emotion": 10, "max_turns": 2, "eval_fraction": 0.4, "share": 0.2,
           "controls": ("random",), "sweep": False, "dose_strengths": (), "steer": False,
           "probe": False, "prompt_choice": "fixed", "batch_size": 8, "null_sets": 2,
           "scopes": ("all",), "cross_per_emotion": 0, "effect_sweep": False,
           "compare_methods": ("lape",), "equal_size": True}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("equal-size-run")
    run(preset_config(**OPTIONS, model=str(tiny_model_dir)), out, progress=False)
    return out


def _sets(run_dir: Path, method: str) -> NeuronSets:
    return NeuronSets.load(run_dir / ("neurons.json" if method == "run"
                                      else f"methods/{method}/neurons.json"))


def test_cut_sets_have_the_smallest_size_and_each_methods_top_neurons(run_dir: Path) -> None:
    full = {method: _sets(run_dir, method) for method in ("run", "lape")}
    cut = {method: _sets(run_dir, method + EQUAL) for method in full}
    cut_somewhere = False
    for emotion in EMOTIONS:
        smallest = min(len(sets.emotions[emotion]) for sets in full.values())
        for method, sets in full.items():
            ranked = sorted(sets.emotions[emotion], key=lambda n: -n.score)
            kept = cut[method].emotions[emotion]
            assert len(kept) == smallest
            assert [n.score for n in kept] == [n.score for n in ranked[:smallest]]
            assert set(kept) <= set(sets.emotions[emotion])
            cut_somewhere |= 0 < smallest < len(sets.emotions[emotion])
    assert cut_somewhere, "no set was cut: the run does not test the cut"


def test_the_comparison_and_the_set_level_test_hold_both_sizes(run_dir: Path) -> None:
    methods = pd.read_csv(run_dir / "methods.csv")
    assert set(methods.method) == {"run", "lape", f"run{EQUAL}", f"lape{EQUAL}"}
    assert (methods.groupby("method").size() == len(EMOTIONS) + 1).all()
    sizes = methods[methods.masked_emotion != "mean"].pivot(
        index="masked_emotion", columns="method", values="n_neurons")
    assert (sizes[f"run{EQUAL}"] == sizes[f"lape{EQUAL}"]).all()
    assert (sizes[f"run{EQUAL}"] == sizes[["run", "lape"]].min(axis=1)).all()
    assert not methods[methods.method.str.endswith(EQUAL)].run_method.any()
    set_level = pd.read_csv(run_dir / "setlevel.csv")
    own = set_level[set_level.statistic == "own"]
    for method in (f"run{EQUAL}", f"lape{EQUAL}"):
        rows = own[own.method == method].set_index("masked_emotion")
        assert set(rows.index) == set(EMOTIONS)
        assert (rows.n_neurons == sizes[method].reindex(rows.index)).all()
    stored = (run_dir / "conditions.jsonl").read_text(encoding="utf-8")
    assert f"/lape{EQUAL}" in stored and f"/run{EQUAL}" in stored  # their own conditions
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"run{EQUAL}" in page and f"lape{EQUAL}" in page
