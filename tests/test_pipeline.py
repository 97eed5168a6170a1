"""`emoneuron run` end to end on a tiny random model saved to disk, resume, and CLI errors."""

from __future__ import annotations

import doctest
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from emoneuron.app import reuse
from emoneuron.app import run as pipeline
from emoneuron.app.run import design_of, run
from emoneuron.causal.conditions.grid import grid
from emoneuron.causal.evaluation.probe import Probe, emotion_labels, residual_features
from emoneuron.causal.evaluation.readout import probe_from
from emoneuron.causal.experiments.directions import EmotionDirections
from emoneuron.causal.inference.setlevel import set_level_conditions
from emoneuron.causal.inference.significance import holm
from emoneuron.cli import main
from emoneuron.config import RunConfig, preset_config
from emoneuron.data.schema import EMOTIONS, read_records
from emoneuron.errors import UserError
from emoneuron.models.loading import load
from emoneuron.recording.statistics import Recording
from emoneuron.selection.identify import SELECTION_METHODS

OPTIONS = {"per_emotion": 8, "max_turns": 2, "eval_fraction": 0.4, "share": 0.05,
           "proportions": (0.5, 1.0), "batch_size": 8, "null_sets": 4, "futility_look": 2,
           "cross_per_emotion": 1, "compare_methods": tuple(SELECTION_METHODS),
           "steer_judges": True, "steer_null_draws": 2}
CONFIG = preset_config(**OPTIONS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("run")
    run(preset_config(**OPTIONS, model=str(tiny_model_dir)), out, progress=False)
    return out


def test_run_writes_every_artefact(run_dir: Path) -> None:
    for name in ("manifest.json", "stats.safetensors", "neurons.json", "stability.json",
                 "ablation.csv", "effects.csv", "sweep.csv", "report.html", "conditions.jsonl",
                 "dose.csv", "specificity.csv", "confusion.csv", "steering.json",
                 "shuffled/neurons-seed0.json",
                 "data/fewshot.jsonl", "data/identify.jsonl", "data/eval.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["n_layers"] == 2 and manifest["model"]["width"] == 80
    assert set(manifest["timings"]) >= {"record", "identify", "ablation", "sweep", "report"}
    assert manifest["versions"]["torch"] and len(manifest["data"]["hash"]) == 64
    assert manifest["data"]["truncated_to_context"] == 0
    # The default selection: Tang et al.'s LAPE, recorded and intervened at act(gate).
    assert manifest["model"]["site"] == manifest["selection"]["site"] == "mlp.activation"
    assert manifest["selection"]["label"] == "LAPE (Tang et al. 2024), with share 0.05"
    assert json.loads((run_dir / "neurons.json").read_text())["site"] == "mlp.activation"


def test_splits_are_disjoint(run_dir: Path) -> None:
    ids = [{r.id for r in read_records(run_dir / "data" / f"{part}.jsonl")}
           for part in ("fewshot", "identify", "eval")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 8 * len(EMOTIONS)
    # Nor does evaluation share a template or phrasing, as the manifest reports.
    shared = json.loads((run_dir / "manifest.json").read_text())["data"]["template_overlap"]
    assert set(shared) == {"template", "opener", "reactions"}
    assert [counts["shared"] for counts in shared.values()] == [0, 0, 0]
    assert all(counts["values"] > 0 for counts in shared.values())


def test_tables_have_every_condition(run_dir: Path) -> None:
    ablation = pd.read_csv(run_dir / "ablation.csv")
    assert list(ablation.columns[:8]) == ["condition", "masked_emotion", "seed", "eval_emotion",
                                          "n", "accuracy", "ci_low", "ci_high"]
    counts = ablation.fillna({"control_set": ""}).groupby(["condition", "control_set"]).size()
    # Random controls are evaluated on all six emotions, the other control sets on their own.
    assert counts.to_dict() == {("baseline", ""): 6, ("mask", ""): 36, ("control", "random"): 108,
                                ("control", "frequency"): 18, ("control", "least"): 6,
                                ("control", "shuffled"): 18}
    assert ablation.query("condition == 'control'").seed.nunique() == 3
    assert ((ablation.ci_low <= ablation.accuracy) & (ablation.accuracy <= ablation.ci_high)).all()
    neurons = json.loads((run_dir / "neurons.json").read_text())
    kept = {(n["layer"], n["index"]) for ns in neurons["emotions"].values() for n in ns}
    assert 0 < len(kept) <= round(0.05 * 2 * 80)  # lape: each kept neuron to 0, 1 or more
    sweep = pd.read_csv(run_dir / "sweep.csv")
    assert list(sweep.columns[:7]) == ["masked_emotion", "layer_range", "proportion", "n_masked",
                                       "eval_emotion", "n", "accuracy"]
    assert len(sweep) == 6 * 4 * 2 and (sweep.masked_emotion == sweep.eval_emotion).all()
    full = sweep.query("layer_range == 'all' and proportion == 1.0")
    for row in full.itertuples():
        assert row.n_masked == len(neurons["emotions"][row.masked_emotion])


def test_rerun_resumes_without_recomputing(run_dir: Path, tiny_model_dir: Path,
                                           tmp_path: Path) -> None:
    store = run_dir / "conditions.jsonl"
    lines = store.read_text().splitlines()
    # The grid, then each compared method other than the run's own (the run selects 5%, every
    # registered method 1%): six masks and six random controls each; then the set-level
    # conditions of the run's own sets and of each method: each set and the random sets its
    # test used, 2 where the futility look stopped it, else all 4 (this tiny model's sets do
    # nothing, so most stop; tests/causal/test_setlevel.py has one that goes on).
    assert len(set_level_conditions(CONFIG.design, "")) == 3 * 6 * (1 + 4)  # scopes x emotions
    tests = pd.read_csv(run_dir / "setlevel.csv").query("statistic == 'own'")
    assert 2 in set(tests.k_random_sets) <= {2, 4}
    assert len(tests) == 3 * 6 * (1 + len(SELECTION_METHODS))
    # Then each emotion's direction at each scope, once, and the nulls each test drew.
    directions = pd.read_csv(run_dir / "directions_setlevel.csv").query("statistic == 'own'")
    assert len(lines) == (len(grid(design_of(CONFIG))) + len(SELECTION_METHODS) * 12
                          + int((1 + tests.k_random_sets).sum())
                          + len(directions) // 2 + int(directions.k_random_sets.sum()))
    # A run killed mid-way: its manifest written first (no file verified yet), 10 conditions
    # finished, the 11th torn while being written.
    # Written before the judged steering existed: a resumed run adds it.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = {k: v for k, v in manifest["config"].items() if not k.startswith("steer_")}
    (resumed / "manifest.json").write_text(json.dumps({**manifest, "config": config,
                                                       "files": {}}))
    (resumed / "conditions.jsonl").write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])
    run(preset_config(**OPTIONS, model=str(tiny_model_dir)), resumed, progress=False)
    again = (resumed / "conditions.jsonl").read_text().splitlines()
    assert again[:10] == lines[:10] and len(again) == len(lines)
    for table in ("ablation.csv", "effects.csv", "sweep.csv", "dose.csv", "specificity.csv",
                  "confusion.csv", "neurons.json", "steering.json", "methods.csv",
                  "setlevel.csv", "steering_judges.csv", "units.csv"):
        assert (resumed / table).read_bytes() == (run_dir / table).read_bytes(), table
    # Turning the step off again would leave its files in the run: refused.
    with pytest.raises(UserError, match="steer_judges = true"):
        run(preset_config(**{**OPTIONS, "steer_judges": False}, model=str(tiny_model_dir)),
            resumed, progress=False)


def test_cli_bad_data_is_one_line_and_exit_2(tmp_path: Path, tiny_model_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    good = {"id": "1", "emotion": "joy", "turns": [{"speaker": "A", "text": "hi"}]}
    data.write_text(json.dumps(good) + "\n" + '{"id": "2", "emotion": "anger", "turns": [\n')
    code = main(["run", "--model", str(tiny_model_dir), "--data", str(data), "--out",
                 str(tmp_path / "out")])
    error = capsys.readouterr().err
    *status, last = error.splitlines()  # the stage the run reached, logged; then one line
    assert code == 2 and status == ["[data]"] and f"{data}:2: malformed JSON" in last


@pytest.mark.parametrize(("model", "message"), [
    ("no-such-model", "unknown model 'no-such-model'"),
    ("missing.gguf", "no such GGUF file"),
])
def test_cli_unknown_model_exit_2(model: str, message: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--model", model, "--per-emotion", "6", "--out", str(tmp_path / "o")])
    assert code == 2 and message in capsys.readouterr().err


def test_cli_unsupported_architecture_exit_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import BertConfig, BertLMHeadModel

    BertLMHeadModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=24,
                               is_decoder=True)).save_pretrained(tmp_path / "bert")
    build = pytest.importorskip("conftest").build_word_tokenizer
    build().save_pretrained(tmp_path / "bert")
    argv = ["run", "--model", str(tmp_path / "bert"), "--per-emotion", "6", "--out",
            str(tmp_path / "o")]
    code = main(argv)
    error = capsys.readouterr().err
    assert code == 2 and "unsupported architecture BertLMHeadModel" in error
    # Found from its config: without its weights the refusal is the same, nothing written.
    (tmp_path / "bert" / "model.safetensors").unlink()
    assert main(argv) == 2
    assert "unsupported architecture BertLMHeadModel" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_identify_reuses_a_runs_statistics(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "neurons.json"
    assert main(["identify", str(run_dir / "stats.safetensors"), "--share", "0.05",
                 "--assignment", "lape", "--model-name", "tiny", "--out", str(out)]) == 0
    mine, runs = json.loads(out.read_text()), json.loads((run_dir / "neurons.json").read_text())
    assert mine["emotions"] == runs["emotions"]
    assert main(["identify", str(run_dir / "stats.safetensors"), "--statistic", "smd",
                 "--assignment", "normalised", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["statistic"] == "smd"


def test_run_config_names_a_selection_method_and_overrides_it() -> None:
    method = preset_config(selection="entropy-argmax", share=0.05).selection_method()
    assert (method.site, method.config.assignment, method.config.share) == (
        "mlp.down_proj.input", "argmax", 0.05)
    assert RunConfig().selection_method().label == "LAPE (Tang et al. 2024)"
    assert RunConfig() == preset_config()
    with pytest.raises(UserError, match="unknown selection method 'tang'"):
        preset_config(selection="tang")
    with pytest.raises(UserError, match="multi was split"):
        preset_config(assignment="multi")
    with pytest.raises(UserError, match=r"--site 'mlp\.up': use one of"):
        preset_config(site="mlp.up")


def test_cli_synth_writes_balanced_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    assert main(["data", "synth", "--per-emotion", "3", "--seed", "5", "--out", str(out)]) == 0
    records = read_records(out)
    assert sorted(r.emotion for r in records) == sorted(EMOTIONS * 3)


def _stored(run_dir: Path) -> dict[str, dict[str, object]]:
    lines = (run_dir / "conditions.jsonl").read_text().splitlines()
    return {entry["key"]: entry for entry in map(json.loads, lines)}


def test_effects_tests_and_flags_follow_from_the_stored_predictions(run_dir: Path) -> None:
    """McNemar's exact test, Holm's correction and the 'improves' flag recomputed by hand from
    the per-dialogue predictions in conditions.jsonl."""
    import math

    evaluation = read_records(run_dir / "data" / "eval.jsonl")
    truth = [EMOTIONS.index(r.emotion) for r in evaluation]
    stored = list(_stored(run_dir).values())

    def correct(kind: str, masked: str) -> list[bool]:
        (entry,) = [e for e in stored if e["kind"] == kind and e["masked_emotion"] == masked
                    and e["layer_range"] == "all" and e["proportion"] == 1.0
                    and e["mode"] == "zero" and list(e["eval_emotions"]) == list(EMOTIONS)
                    and e["control"] == "" and e["method"] == ""]
        return [p == t for p, t in zip(entry["predictions"], truth, strict=True)]

    effects = pd.read_csv(run_dir / "effects.csv")
    own = effects[(effects.masked_emotion == effects.eval_emotion)
                  & (effects.control_set == "random")].set_index("masked_emotion")
    raw = {}
    for emotion in EMOTIONS:
        rows = [k for k, r in enumerate(evaluation) if r.emotion == emotion]
        base, mask = correct("baseline", ""), correct("mask", emotion)
        lost = sum(base[k] and not mask[k] for k in rows)
        gained = sum(mask[k] and not base[k] for k in rows)
        n = lost + gained
        p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in
                                                range(min(lost, gained) + 1)) / 2**n)
        raw[emotion] = p
        assert own.loc[emotion, "p_mcnemar_baseline"] == pytest.approx(p)
        accuracy = (sum(mask[k] for k in rows) / len(rows), sum(base[k] for k in rows) / len(rows))
        if own.loc[emotion, "improves"]:
            assert accuracy[0] > accuracy[1]
    ranked = sorted(EMOTIONS, key=raw.__getitem__)
    running = 0.0
    for rank, emotion in enumerate(ranked):
        running = max(running, min(1.0, (6 - rank) * raw[emotion]))
        assert own.loc[emotion, "p_mcnemar_baseline_holm"] == pytest.approx(running)
    assert effects[effects.masked_emotion != effects.eval_emotion].p_exact_control_holm.isna().all()
    assert set(effects.control_set) == {"random", "frequency", "least", "shuffled"}


def test_specificity_confusion_and_dose_tables(run_dir: Path) -> None:
    ablation = pd.read_csv(run_dir / "ablation.csv")
    drops = ablation[ablation.condition == "mask"].pivot_table(
        index="masked_emotion", columns="eval_emotion", values="drop")
    specificity = pd.read_csv(run_dir / "specificity.csv").set_index("masked_emotion")
    for emotion in EMOTIONS:
        others = drops.loc[emotion].drop(emotion).mean()
        assert specificity.loc[emotion, "specificity"] == pytest.approx(
            drops.loc[emotion, emotion] - others)
        assert specificity.loc[emotion, "ci_low"] <= specificity.loc[emotion, "specificity"] \
            <= specificity.loc[emotion, "ci_high"]
    confusion = pd.read_csv(run_dir / "confusion.csv").fillna({"masked_emotion": ""})
    n_eval = len(read_records(run_dir / "data" / "eval.jsonl"))
    assert (confusion.groupby(["condition", "masked_emotion"])["count"].sum() == n_eval).all()
    baseline = confusion[confusion.condition == "baseline"]
    hits = baseline[baseline.true_emotion == baseline.predicted_emotion]["count"].sum()
    base_rows = ablation[ablation.condition == "baseline"]
    assert hits == pytest.approx((base_rows.accuracy * base_rows.n).sum())
    dose = pd.read_csv(run_dir / "dose.csv")
    strengths = dose[dose.variable == "strength"]
    assert set(strengths.value) == {0.0, 0.5, 1.0, 2.0}
    assert set(dose[dose.variable == "proportion"].value) == {0.0, 0.5, 1.0}
    assert (dose.groupby(["masked_emotion", "variable", "condition"]).size() >= 3).all()


def test_steering_compares_each_emotion_with_a_random_set(run_dir: Path) -> None:
    steering = json.loads((run_dir / "steering.json").read_text())
    assert set(steering["emotions"]) == set(EMOTIONS)
    for result in steering["emotions"].values():
        assert set(result) == {"none", "emotion", "random", "n_neurons",
                               "p_mcnemar_emotion_vs_random"}
        assert 0 < result["p_mcnemar_emotion_vs_random"] <= 1
        for name in ("none", "emotion", "random"):
            assert len(result[name]["continuations"]) == len(steering["dialogues"])
            assert 0 <= result[name]["classified_as_target"] <= 1
            # Wilson: a width even when all or none of the 12 continuations is the emotion.
            assert (result[name]["classified_ci_low"] <= result[name]["classified_as_target"]
                    <= result[name]["classified_ci_high"])
            assert result[name]["classified_ci_high"] - result[name]["classified_ci_low"] > 0.2
            assert sum(result[name]["mean_probability"].values()) == pytest.approx(1)
        assert result["none"]["continuations"] == steering["emotions"]["anger"]["none"][
            "continuations"]
    assert any(result["emotion"]["continuations"] != result["none"]["continuations"]
               for result in steering["emotions"].values()), "amplifying changed nothing"


def test_steering_is_judged_by_the_probe_and_the_lexicon_against_nulls(run_dir: Path
                                                                        ) -> None:
    table = pd.read_csv(run_dir / "steering_judges.csv")
    description = json.loads((run_dir / "steering_judges.json").read_text())
    assert description["direction_layers"] == [1] and description["alpha"] > 0
    assert description["judge_layer"] in (1, 2) and description["null_draws"] == 2
    steered = set(table.emotion[table.unit == "neurons"])
    assert set(table.emotion[table.unit == "direction"]) == set(EMOTIONS) >= steered
    assert set(table.judge) == {"probe", "lexicon"} and (table.n_continuations == 12).all()
    for _, family in table.groupby(["unit", "judge"]):
        assert family.p_holm.tolist() == pytest.approx(holm(family.p.tolist()), abs=1e-5)
    assert ((table.share_ci_low <= table.share) & (table.share <= table.share_ci_high)).all()
    continuations = description["continuations"]
    assert len(continuations) == 1 + 3 * len(steered) + len(EMOTIONS) + 2
    # The unsteered and amplified-neuron continuations are the classifier steering's own.
    steering = json.loads((run_dir / "steering.json").read_text())
    assert continuations["unsteered"] == steering["emotions"]["anger"]["none"]["continuations"]
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    section = page.split('<section id="steering">')[1].split("</section>")[0]
    assert "Steering judged outside the classifier" in section
    assert "Sample continuations, judged steering" in section


def test_units_put_each_emotions_set_beside_its_direction(run_dir: Path) -> None:
    units = pd.read_csv(run_dir / "units.csv")
    setlevel = pd.read_csv(run_dir / "setlevel.csv")
    directions = pd.read_csv(run_dir / "directions_setlevel.csv")
    removal = units[units.effect == "removal"]
    assert (removal.unit == "neurons").sum() == setlevel.run_method.sum()
    assert (removal.unit == "direction").sum() == (directions.null == "random").sum()
    assert (units.effect == "steering").sum() == len(pd.read_csv(run_dir / "steering_judges.csv"))
    dimension = units[units.effect == "dimension"]
    assert sorted(dimension.emotion) == sorted(EMOTIONS) and dimension.note.str.len().min() > 0
    own = setlevel[setlevel.run_method & (setlevel.scope == "all")
                   & (setlevel.statistic == "own")].set_index("masked_emotion")
    for row in dimension.itertuples():  # a part of the set, never more than the whole
        assert pd.isna(row.size) or row.size <= own.n_neurons.get(row.emotion, 0)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    section = page.split('<section id="units">')[1].split("</section>")[0]
    assert "Which unit carries each emotion" in section
    assert section.count("lowers it beyond the random null") == len(EMOTIONS)


def test_report_shows_dose_response_and_steering(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Dose-response: accuracy against activation strength" in page
    assert "Dose-response: accuracy against share removed" in page
    assert (run_dir / "figures" / "dose_strength.svg").exists()
    assert "Confusion matrices before and after masking" in page
    steering = page.split('<section id="steering">')[1].split("</section>")[0]
    classifier, judged = steering.split("Steering judged outside the classifier")
    assert "Sample continuations" in classifier and classifier.count("<h4>") == len(EMOTIONS)
    assert judged.count("<h4>") == len(EMOTIONS)


def test_cli_evaluate_compares_prompt_variants_on_one_split(tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    from emoneuron.causal.evaluation.classifier import Classifier, order_shots
    from emoneuron.data.split import split
    from emoneuron.models.loading import load

    out = tmp_path / "variants.csv"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--per-emotion", "8",
                 "--max-turns", "2", "--shots", "0", "2", "--prompts", "plain",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(zip(table.shots_per_emotion, table.calibrated, strict=True)) == [
        (0, False), (0, True), (2, False), (2, True)]
    assert (table["mean"] - table[list(EMOTIONS)].mean(axis=1)).abs().max() < 1e-3
    # The calibrated 2-shot row is what a run's classifier would score on the same split.
    from emoneuron.data.synth import synthesize

    splits = split(synthesize(8, 0, 2), 0.5, 0, 2)
    classifier = Classifier(load(str(tiny_model_dir)), order_shots(splits.fewshot, 0, 2),
                            calibrate=True, style="plain")
    predicted = classifier.predict(splits.evaluate).argmax(axis=1)
    correct = predicted == [EMOTIONS.index(r.emotion) for r in splits.evaluate]
    emotions = [r.emotion for r in splits.evaluate]
    row = table.iloc[3]
    for emotion in EMOTIONS:
        mine = [c for c, e in zip(correct, emotions, strict=True) if e == emotion]
        assert row[emotion] == pytest.approx(sum(mine) / len(mine), abs=1e-4)


def test_run_identifies_on_one_file_and_evaluates_on_another(tmp_path: Path,
                                                             tiny_model_dir: Path) -> None:
    from emoneuron.data.schema import write_records
    from emoneuron.data.synth import synthesize

    identification, evaluation = tmp_path / "identify.jsonl", tmp_path / "eval.jsonl"
    write_records(identification, synthesize(6, seed=1, max_turns=2))
    other = synthesize(3, seed=2, max_turns=2, keyword_free=True)
    write_records(evaluation, other)
    config = preset_config(**{**OPTIONS, "model": str(tiny_model_dir),
                              "data": str(identification), "eval_data": str(evaluation),
                              "sweep": False, "steer": False, "controls": ("random",),
                              "dose_strengths": ()})
    out = tmp_path / "run"
    run(config, out, progress=False)
    assert [r.id for r in read_records(out / "data" / "eval.jsonl")] == [r.id for r in other]
    assert len(read_records(out / "data" / "identify.jsonl")) == 6 * 6 - 6  # all but shots
    leaky = tmp_path / "leaky.jsonl"
    write_records(leaky, [*other, read_records(identification)[3]])
    code = main(["run", "--model", str(tiny_model_dir), "--data", str(identification),
                 "--eval-data", str(leaky), "--out", str(tmp_path / "run2"), "--quiet"])
    assert code == 2


def test_report_shows_stability_and_links_every_card(run_dir: Path) -> None:
    import re

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "How stable is each set?" in page
    links = re.findall(r'<a href="(cards/L\d+-N\d+\.html)">', page)
    index = json.loads((run_dir / "cards" / "index.json").read_text())
    assert len(links) == sum(len(cards) for cards in index["emotions"].values()) > 0
    assert all((run_dir / link).stat().st_size > 0 for link in links)


@pytest.mark.parametrize(("damage", "named"), [
    ("empty directory", "manifest.json: missing"),
    ("corrupt manifest", "manifest.json: unreadable"),
    ("no effects", "effects.csv: missing"),
    ("empty effects", "effects.csv: changed since the run wrote it"),
])
def test_report_on_a_damaged_run_directory_is_one_line(
        run_dir: Path, tmp_path: Path, damage: str, named: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tmp_path / "damaged"
    if damage == "empty directory":
        damaged.mkdir()
    else:
        shutil.copytree(run_dir, damaged)
    if damage == "corrupt manifest":
        (damaged / "manifest.json").write_text("{not json")
    elif damage == "no effects":
        (damaged / "effects.csv").unlink()
    elif damage == "empty effects":
        (damaged / "effects.csv").write_text("")
    assert main(["report", str(damaged)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def test_set_level_table_tests_every_method_scope_and_statistic(run_dir: Path) -> None:
    table = pd.read_csv(run_dir / "setlevel.csv")
    assert set(table.statistic) == {"own", "cross", "specific", "probe"}
    assert set(table.scope) == {"all", "dialogue", "last"}
    assert table.k_random_sets.isin([2, 4]).all()  # the futility look's, or all
    for _, family in table.groupby(["method", "scope", "statistic"]):
        assert len(family) <= len(EMOTIONS)
        assert family.p_holm.tolist() == pytest.approx(holm(family.p.tolist()))
        beyond = (family.p_holm <= 0.05) & (family.excess > 0)
        assert (family.beyond == beyond).all()
        assert ((family.ci_low <= family.excess) & (family.excess <= family.ci_high)).all()
    # No set of this tiny model is beyond random sets, so the effect sweep has no part to test.
    assert not (table.beyond & (table.scope == "all") & (table.statistic == "own")).any()
    assert pd.read_csv(run_dir / "sweep_setlevel.csv").empty
    assert not (run_dir / "formats_setlevel.csv").exists()  # no other format asked for
    own = table[table.statistic == "own"]
    assert own.reading.notna().all() and table[table.statistic != "own"].reading.isna().all()
    probe = json.loads((run_dir / "probe.json").read_text())
    assert len(probe["held_out_accuracy"]) == 2 + 1  # the tiny model's layers and embeddings


def test_directions_are_written_listed_and_tested_against_their_nulls(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for name in ("directions.safetensors", "directions.json", "directions_setlevel.csv"):
        assert name in manifest["files"], name
    description = json.loads((run_dir / "directions.json").read_text())
    assert description["tested_layers"] == [1]  # the tiny model's only inner residual layer
    assert len(description["held_out_accuracy"]) == 3
    assert len(description["probe_train_accuracy"]) == 3  # too few dialogues to cross-validate
    assert description["neutral_components"] == 0 and description["layer_choice"]
    table = pd.read_csv(run_dir / "directions_setlevel.csv")
    assert set(table.unit) == {"direction"} and set(table.null) == {"random", "shuffled"}
    assert set(table.statistic) == {"own", "cross", "specific", "probe"}
    assert set(table.scope) == {"all", "dialogue", "last"}
    assert (table.n_layers == 1).all() and "n_neurons" not in table
    setlevel = pd.read_csv(run_dir / "setlevel.csv")
    assert set(setlevel.columns) - set(table.columns) == {"n_neurons"}
    for _, family in table.groupby(["method", "scope", "statistic"]):
        assert len(family) == len(EMOTIONS) and family.null.nunique() == 1
        # The table holds p-values to 6 significant digits.
        assert family.p_holm.tolist() == pytest.approx(holm(family.p.tolist()), abs=1e-5)
    for null, name in (("random", "random directions"), ("shuffled", "shuffled-label directions")):
        verdicts = table[table.null == null].verdict
        assert verdicts.str.endswith(name).all(), verdicts.unique()  # the null it was tested on
    assert table.k_random_sets.isin([2, 4]).all()
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Emotion directions against random directions" in page
    assert "direction vs shuffled-label directions: own drop" in page


def test_probe_and_directions_equal_those_of_a_second_feature_pass(run_dir: Path,
                                                                    tiny_model_dir: Path) -> None:
    """The run fits them on the identification features its recording pass kept; a separate
    pass over the same dialogues in the same batches gives the same fits, to the bit."""
    loaded = load(str(tiny_model_dir))
    identify, evaluate = (read_records(run_dir / "data" / f"{part}.jsonl")
                          for part in ("identify", "eval"))
    train = residual_features(loaded, identify, batch_size=OPTIONS["batch_size"])
    held_out = residual_features(loaded, evaluate, batch_size=OPTIONS["batch_size"])
    labels, held_out_labels = emotion_labels(identify), emotion_labels(evaluate)
    probe = probe_from(train, labels, held_out, held_out_labels)
    directions = EmotionDirections.fit(train, labels).with_held_out(held_out, held_out_labels)
    ran_probe = Probe.load(run_dir / "probe.safetensors")
    for name in ("weight", "bias", "mean", "std"):
        assert torch.equal(getattr(ran_probe, name), getattr(probe, name)), name
    assert json.loads((run_dir / "probe.json").read_text())["held_out_accuracy"] == list(
        probe.held_out_accuracy)
    ran_directions = EmotionDirections.load(run_dir / "directions.safetensors")
    assert torch.equal(ran_directions.difference, directions.difference)
    assert torch.equal(ran_directions.centre, directions.centre)
    description = json.loads((run_dir / "directions.json").read_text())
    assert description["held_out_accuracy"] == list(directions.held_out_accuracy)
    # The run's statistics file keeps the statistics alone.
    assert Recording.load(run_dir / "stats.safetensors").residual_means is None


def test_the_pipelines_examples_hold() -> None:
    """Among them: a resumed run may add a step, not drop it, and sets an added step's
    settings."""
    assert doctest.testmod(pipeline).failed == doctest.testmod(reuse).failed == 0
