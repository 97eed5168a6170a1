"""Methods compared by their causal effect, `emoneuron ablate`, prompt choice and presets."""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from file_safety import tree

from emoneuron.app import ablate as app_ablate
from emoneuron.app.run import run
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.causal.evaluation.prompts import choose_prompt
from emoneuron.causal.inference.significance import stratified_interval
from emoneuron.cli import main
from emoneuron.config import RunConfig, preset_config
from emoneuron.data.schema import EMOTIONS, Record, read_records
from emoneuron.data.split import split
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel
from emoneuron.selection.identify import SELECTION_METHODS

OPTIONS = {"per_emotion": 10, "max_turns": 2, "eval_fraction": 0.4, "share": 0.05,
           "controls": ("random",), "sweep": False, "dose_strengths": (), "steer": False,
           "batch_size": 8, "null_sets": 2, "scopes": ("all",), "cross_per_emotion": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("methods-run")
    run(preset_config(**OPTIONS, model=str(tiny_model_dir)), out, progress=False)
    return out


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in map(json.loads, path.read_text().splitlines())}


def _correct(entry: dict[str, Any], evaluation: list[Record], emotion: str) -> np.ndarray:
    subset = [r.emotion for r in evaluation if r.emotion in entry["eval_emotions"]]
    predicted = np.array(entry["predictions"])
    return np.array([EMOTIONS[p] == t for p, t in zip(predicted, subset, strict=True)
                     if t == emotion], dtype=float)


def test_stratified_interval_covers_at_its_nominal_rate() -> None:
    """Simulated SED-like sums: own-stratum paired differences plus five cross strata."""
    rng = np.random.default_rng(0)
    truth = (0.6 - 0.4) - 5 * (0.7 - 0.6) / 5
    covered = 0
    for _ in range(2000):
        own = (rng.random(40) < 0.6).astype(float) - (rng.random(40) < 0.4)
        cross = [-((rng.random(40) < 0.7).astype(float) - (rng.random(40) < 0.6)) / 5
                 for _ in range(5)]
        interval = stratified_interval([own, *cross])
        covered += interval.low <= truth <= interval.high
    assert 0.93 <= covered / 2000 <= 0.97


def test_methods_csv_follows_from_the_stored_predictions(run_dir: Path) -> None:
    methods = pd.read_csv(run_dir / "methods.csv")
    # The run selects 5%, every registered method 1%: none is the run's own.
    assert set(methods.method) == {"run", *SELECTION_METHODS}
    assert (methods.groupby("method").size() == 7).all()
    means = methods[methods.masked_emotion == "mean"]
    assert list(means["rank"]) == list(range(1, len(SELECTION_METHODS) + 2))
    assert means.specific_excess_drop.is_monotonic_decreasing
    evaluation = read_records(run_dir / "data" / "eval.jsonl")
    stored = _entries(run_dir / "conditions.jsonl")
    base = next(e for k, e in stored.items() if k.startswith("baseline/"))
    for method, tag in (("auroc", "/auroc"), ("run", "")):
        for emotion in EMOTIONS:
            mask = next(e for k, e in stored.items() if k.startswith(f"mask//{emotion}/all/1/")
                        and k.endswith(",surprise" + tag) and e["mode"] == "zero")
            control = next(e for k, e in stored.items() if k.startswith(
                f"control/random/{emotion}/all/1/0/zero/0/") and k.endswith(
                (f"/{emotion}" if tag else ",surprise") + tag))
            own = (np.mean(_correct(base, evaluation, emotion))
                   - np.mean(_correct(mask, evaluation, emotion)))
            control_drop = (np.mean(_correct(base, evaluation, emotion))
                            - np.mean(_correct(control, evaluation, emotion)))
            cross = np.mean([np.mean(_correct(base, evaluation, e))
                             - np.mean(_correct(mask, evaluation, e))
                             for e in EMOTIONS if e != emotion])
            row = methods[(methods.method == method) & (methods.masked_emotion == emotion)]
            assert row.specific_excess_drop.item() == pytest.approx(own - control_drop - cross,
                                                                    abs=1e-5)
            assert row.ci_low.item() <= row.specific_excess_drop.item() <= row.ci_high.item()
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Which selection finds neurons that matter" in page and "sets matter most" in page
    assert (run_dir / "figures" / "methods.svg").exists()


def test_ablate_reproduces_a_compared_method_and_resumes(run_dir: Path) -> None:
    neurons = run_dir / "methods" / "auroc" / "neurons.json"
    assert main(["ablate", str(run_dir), "--neurons", str(neurons), "--name", "again",
                 "--quiet"]) == 0
    out = run_dir / "methods" / "again"
    for name in ("effects.csv", "ablation.csv", "specificity.csv", "conditions.jsonl"):
        assert (out / name).stat().st_size > 0, name
    stored = _entries(out / "conditions.jsonl")
    main_baseline = next(e for k, e in _entries(run_dir / "conditions.jsonl").items()
                         if k.startswith("baseline/"))
    assert stored[main_baseline["key"]]["predictions"] == main_baseline["predictions"]
    # Same sets, split, classifier and first control seed: the same numbers as in the run.
    methods = pd.read_csv(run_dir / "methods.csv")
    again = methods[methods.method == "again"].set_index("masked_emotion")
    auroc = methods[methods.method == "auroc"].set_index("masked_emotion")
    columns = ["own_drop", "control_drop", "cross_drop", "specific_excess_drop", "ci_low"]
    assert np.allclose(again[columns], auroc.loc[again.index, columns])
    assert main(["ablate", str(run_dir), "--neurons", str(neurons), "--name", "again",
                 "--quiet"]) == 0
    assert _entries(out / "conditions.jsonl").keys() == stored.keys()


def test_ablate_refuses_neurons_outside_the_model(run_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    payload = json.loads((run_dir / "neurons.json").read_text())
    payload["emotions"]["fear"].append({"layer": 7, "index": 3, "score": 1.0})
    neurons = tmp_path / "far.json"
    neurons.write_text(json.dumps(payload))
    assert main(["ablate", str(run_dir), "--neurons", str(neurons)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (f"error: {neurons}: fear neuron layer 7 index 3 is outside the model "
                     "(2 layers x 80 neurons); use the neurons.json identified for this model")
    assert not (run_dir / "methods" / "far").exists()


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal must come before the model loads (and so before any write)."""
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(app_ablate, "load", refuse)


@pytest.mark.parametrize("name", ["run", "lape", "auroc", "attribution"])
def test_ablate_refuses_the_name_of_a_method_of_the_run(
        name: str, run_copy: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The run's selection (lape, or "run" when no compared method equals it) and the methods it
    compared: their rows in methods.csv and their folders stay the run's."""
    neurons = run_copy / "methods" / "auroc" / "neurons.json"
    before = tree(run_copy)
    _no_model(monkeypatch)
    assert main(["ablate", str(run_copy), "--neurons", str(neurons), "--name", name]) == 2
    assert _one_error(capsys) == (
        f"error: --name {name}: a method of the run in {run_copy} (its results in methods.csv "
        "would be replaced); choose another --name")
    assert tree(run_copy) == before


def test_ablate_refuses_other_neurons_under_an_earlier_ablates_name(
        run_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    first = run_copy / "methods" / "auroc" / "neurons.json"
    assert main(["ablate", str(run_copy), "--neurons", str(first), "--name", "mine",
                 "--quiet"]) == 0
    assert main(["report", str(run_copy)]) == 0
    payload = json.loads(first.read_text())
    fullest = max(payload["emotions"].values(), key=len)
    del fullest[0]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(payload))
    (run_copy / "methods" / "notes").write_text("a file of mine")
    before = tree(run_copy)
    capsys.readouterr()
    _no_model(monkeypatch)
    for name, neurons in (("mine", other), ("notes", first)):
        assert main(["ablate", str(run_copy), "--neurons", str(neurons), "--name", name]) == 2
        assert _one_error(capsys) == (
            f"error: --name {name}: {run_copy / 'methods' / name} holds other results (an "
            "earlier ablate's, or a file); choose another --name, or give the same neurons "
            "file to resume that ablate")
        assert tree(run_copy) == before
    assert main(["report", str(run_copy)]) == 0


def test_an_ablates_conditions_of_other_inputs_are_mended_as_the_message_says(
        run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The message once said to use a new --out directory, which ablate does not have."""
    neurons = run_copy / "methods" / "auroc" / "neurons.json"
    argv = ["ablate", str(run_copy), "--neurons", str(neurons), "--name", "mine", "--quiet"]
    assert main(argv) == 0
    store = run_copy / "methods" / "mine" / "conditions.jsonl"
    entries = [json.loads(line) for line in store.read_text().splitlines()]
    store.write_text("".join(json.dumps({**entry, "context": "other"}) + "\n"
                             for entry in entries))
    capsys.readouterr()
    assert main(argv) == 2
    assert _one_error(capsys) == (
        f"error: {store}: written for different evaluation data, neurons, model or prompt; "
        "delete it and rerun the same command to recompute its conditions")
    store.unlink()
    assert main(argv) == 0
    assert main(["report", str(run_copy)]) == 0


def test_report_refuses_a_run_whose_listed_files_changed(
        run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Also a file the report does not read: the report stands for the whole run."""
    neurons = run_copy / "methods" / "auroc" / "neurons.json"
    neurons.write_text(neurons.read_text().replace('"layer": 0', '"layer": 1', 1))
    assert main(["report", str(run_copy)]) == 2
    assert _one_error(capsys).startswith(f"error: {neurons}: changed since the run wrote it")
    neurons.unlink()
    assert main(["report", str(run_copy)]) == 2
    assert _one_error(capsys).startswith(f"error: {neurons}: missing")


def _edited(payload: dict[str, Any], emotion: str, change: str) -> dict[str, Any]:
    first = payload["emotions"][emotion][0]
    if change == "duplicate":
        payload["emotions"][emotion].append(dict(first))
    elif change.startswith(("layer=", "index=", "score=")):
        key, value = change.split("=")
        first[key] = json.loads(value)
    else:
        key, value = change.split(":", 1)
        payload[key] = json.loads(value)
    return payload


@pytest.mark.parametrize(("change", "message"), [
    ("duplicate", "EMOTION lists neuron layer LAYER index INDEX twice; list each neuron once per "
                  "emotion"),
    ("layer=1.7", "EMOTION neuron layer 1.7 is not a whole number; give each layer and index as "
                  "an integer, as `emoneuron identify` writes them"),
    ("index=3.9", "EMOTION neuron index 3.9 is not a whole number"),
    ("index=true", "EMOTION neuron index true is not a whole number"),
    ("layer=Infinity", "EMOTION neuron layer Infinity is not a whole number"),
    ("layer=\"1\"", "EMOTION neuron layer \"1\" is not a whole number"),
    ("width:999", "declares 2 layers x 999 neurons, this run's model has 2 x 80; use neurons "
                  "identified on this run's model, e.g. `emoneuron identify "),
    ("n_layers:5", "declares 5 layers x 80 neurons, this run's model has 2 x 80"),
    ("width:80.5", "not a valid neurons.json (TypeError('expected a whole number, got 80.5'))"),
    ("model:\"smollm2-135m\"", "declares model 'smollm2-135m', this run's is "),
    ("score=NaN", "EMOTION neuron layer LAYER index INDEX has score NaN, not a finite number; "
                  "give the scores `emoneuron identify` wrote"),
    ("score=\"high\"", "EMOTION neuron layer LAYER index INDEX has score \"high\", not a finite"),
    ("overlap:{\"counts\": [[1, 2]]}", "not a valid neurons.json (TypeError('overlap counts "
                                     "must be 6 x 6 whole numbers, got [[1, 2]]'))"),
    ("parameters:{\"share\": 5}", "not a valid neurons.json (ValueError('parameters: --share 5: "
                                 "must be in (0, 1], e.g. 0.01 for 1%'))"),
    ("site:\"mlp.pre_activation\"", "site 'mlp.pre_activation' cannot be removed with this "
                                     "run's mode 'zero'; give neurons found at "
                                     "'mlp.down_proj.input'"),
])
def test_ablate_refuses_a_neurons_file_that_does_not_fit_the_run(
        change: str, message: str, run_copy: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    payload = json.loads((run_copy / "methods" / "auroc" / "neurons.json").read_text())
    emotion = max(EMOTIONS, key=lambda e: len(payload["emotions"][e]))
    first = dict(payload["emotions"][emotion][0])
    payload = _edited(payload, emotion, change)
    neurons = tmp_path / "edited.json"
    neurons.write_text(json.dumps(payload))
    before = tree(run_copy)
    _no_model(monkeypatch)
    assert main(["ablate", str(run_copy), "--neurons", str(neurons)]) == 2
    error = _one_error(capsys)
    assert error.startswith(f"error: {neurons}: "), error
    assert message.replace("LAYER", str(first["layer"])).replace(
        "INDEX", str(first["index"])).replace("EMOTION", emotion) in error, error
    assert tree(run_copy) == before


def test_an_unknown_method_to_compare_is_refused() -> None:
    with pytest.raises(UserError, match="--compare-methods nope: use some of lape"):
        run(preset_config(compare_methods=("nope",)), Path("unused"), progress=False)


def test_prompt_choice_maximises_the_worst_emotion_on_identification_only(
        make_word_tiny: Callable[[str], LoadedModel], monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_word_tiny("llama")
    splits = split(synthesize(8, 0, 2), 0.4, 0)
    seen: list[str] = []
    encode = Classifier.encode

    # Every scored query is encoded: the dialogues the choice reads, and the content-free one.
    def spy(self: Classifier, record: Record, *args: Any) -> Any:
        seen.append(record.id)
        return encode(self, record, *args)

    monkeypatch.setattr(Classifier, "encode", spy)
    choice = choose_prompt(loaded, order_shots(splits.fewshot, 0), splits.identify,
                           per_emotion=3)
    assert set(seen) <= {r.id for r in splits.identify} | {"content-free"}
    assert len(set(seen)) == 3 * len(EMOTIONS) + 1
    best = max(choice.variants, key=lambda v: (v["worst"], v["mean"]))
    assert (choice.style, choice.calibrate) == (best["style"], best["calibrate"])
    assert {v["calibrate"] for v in choice.variants} == {True, False}


def test_run_records_its_prompt_choice_and_preset(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    choice = manifest["evaluation"]["prompt_choice"]
    best = max(choice["variants"], key=lambda v: (v["worst"], v["mean"]))
    assert (manifest["evaluation"]["style"], manifest["evaluation"]["calibrate"]) == (
        best["style"], best["calibrate"])
    assert manifest["config"]["preset"] == ""
    assert "Custom run" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_presets_fill_what_the_command_line_leaves_out(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[RunConfig] = []
    monkeypatch.setattr(importlib.import_module("emoneuron.app.run"), "run",
                        lambda config, *_, **__: seen.append(config))
    assert main(["run", "--preset", "demo", "--max-turns", "3", "--out", str(tmp_path)]) == 0
    assert main(["run", "--out", str(tmp_path)]) == 0
    demo, plain = seen
    assert (demo.preset, demo.per_emotion, demo.max_turns, demo.design.proportions) == (
        "demo", 50, 3, (0.5, 1.0))
    assert plain == RunConfig()
    study = preset_config("study")
    counts = split(synthesize(study.per_emotion, 0, study.max_turns), study.eval_fraction,
                   0).counts()
    assert min(counts["eval"].values()) >= 60 and min(counts["identify"].values()) >= 90
    assert study.design.control_seeds == (0,) and study.design.null_sets >= 20
