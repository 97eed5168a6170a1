"""`emoneuron run` end to end on a tiny random model saved to disk, resume, and CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from emoneuron.cli import main
from emoneuron.data.schema import EMOTIONS, read_records
from emoneuron.run import RunConfig, run
from emoneuron.sweep import grid

CONFIG = RunConfig(per_emotion=8, max_turns=2, eval_fraction=0.4, share=0.05,
                   proportions=(0.5, 1.0), batch_size=8)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("run")
    run(RunConfig(**{**CONFIG.__dict__, "model": str(tiny_model_dir)}), out, progress=False)
    return out


def test_run_writes_every_artefact(run_dir: Path) -> None:
    for name in ("manifest.json", "stats.safetensors", "neurons.json", "stability.json",
                 "ablation.csv",
                 "effects.csv", "sweep.csv", "report.html", "conditions.jsonl",
                 "data/fewshot.jsonl", "data/identify.jsonl", "data/eval.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["n_layers"] == 2 and manifest["model"]["width"] == 80
    assert set(manifest["timings"]) >= {"record", "identify", "ablation", "sweep", "report"}
    assert manifest["versions"]["torch"] and len(manifest["data"]["hash"]) == 64
    assert manifest["data"]["truncated_to_context"] == 0


def test_splits_are_disjoint(run_dir: Path) -> None:
    ids = [{r.id for r in read_records(run_dir / "data" / f"{part}.jsonl")}
           for part in ("fewshot", "identify", "eval")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 8 * len(EMOTIONS)


def test_tables_have_every_condition(run_dir: Path) -> None:
    ablation = pd.read_csv(run_dir / "ablation.csv")
    assert list(ablation.columns[:8]) == ["condition", "masked_emotion", "seed", "eval_emotion",
                                          "n", "accuracy", "ci_low", "ci_high"]
    counts = ablation.condition.value_counts()
    assert (counts["baseline"], counts["mask"], counts["control"]) == (6, 36, 108)
    assert ablation.query("condition == 'control'").seed.nunique() == 3
    assert ((ablation.ci_low <= ablation.accuracy) & (ablation.accuracy <= ablation.ci_high)).all()
    neurons = json.loads((run_dir / "neurons.json").read_text())
    assert sum(map(len, neurons["emotions"].values())) == round(0.05 * 2 * 80)
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
    assert len(lines) == len(grid(CONFIG.control_seeds, CONFIG.proportions))
    # A run killed mid-way: 10 conditions finished, the 11th torn while being written.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "conditions.jsonl").write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])
    run(RunConfig(**{**CONFIG.__dict__, "model": str(tiny_model_dir)}), resumed, progress=False)
    again = (resumed / "conditions.jsonl").read_text().splitlines()
    assert again[:10] == lines[:10] and len(again) == len(lines)
    for table in ("ablation.csv", "effects.csv", "sweep.csv", "neurons.json"):
        assert (resumed / table).read_bytes() == (run_dir / table).read_bytes(), table


def test_cli_bad_data_is_one_line_and_exit_2(tmp_path: Path, tiny_model_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    good = {"id": "1", "emotion": "joy", "turns": [{"speaker": "A", "text": "hi"}]}
    data.write_text(json.dumps(good) + "\n" + '{"id": "2", "emotion": "anger", "turns": [\n')
    code = main(["run", "--model", str(tiny_model_dir), "--data", str(data), "--out",
                 str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and f"{data}:2: malformed JSON" in error and len(error.splitlines()) == 1


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
    code = main(["run", "--model", str(tmp_path / "bert"), "--per-emotion", "6",
                 "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err
    assert code == 2 and "unsupported architecture BertLMHeadModel" in error


def test_cli_identify_reuses_a_runs_statistics(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "neurons.json"
    assert main(["identify", str(run_dir / "stats.safetensors"), "--share", "0.05",
                 "--model-name", "tiny", "--out", str(out)]) == 0
    mine, runs = json.loads(out.read_text()), json.loads((run_dir / "neurons.json").read_text())
    assert mine["emotions"] == runs["emotions"]
    assert main(["identify", str(run_dir / "stats.safetensors"), "--method", "smd",
                 "--assignment", "multi", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["method"] == "smd"


def test_cli_synth_writes_balanced_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "synth.jsonl"
    assert main(["data", "synth", "--per-emotion", "3", "--seed", "5", "--out", str(out)]) == 0
    records = read_records(out)
    assert sorted(r.emotion for r in records) == sorted(EMOTIONS * 3)
