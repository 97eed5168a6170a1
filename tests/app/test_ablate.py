"""`emoneuron ablate` (emoneuron.app.ablate) resumes only predictions made with the run's own
prompt, its few-shot examples included: the condition store's context is the run's
(emoneuron.app.reuse.store_context)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from file_safety import tiny_run_args

from emoneuron.cli import main
from emoneuron.data.schema import read_records, write_records
from emoneuron.data.synth import synthesize


def _entries(path: Path) -> dict[str, dict[str, object]]:
    return {e["key"]: e for e in map(json.loads, path.read_text().splitlines())}


def test_ablate_refuses_predictions_made_with_other_fewshot_examples(
        tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The number of examples is in the prompt's description, which names the store's context;
    which dialogues they are is not. With --eval-data the evaluation split stays the same when
    --seed draws other examples, and a run redone over a damaged manifest (resumed without
    comparing settings) kept an earlier ablate's predictions, resumed with the old examples."""
    data, evaluation = tmp_path / "data.jsonl", tmp_path / "eval.jsonl"
    write_records(data, synthesize(8, seed=1, max_turns=2))
    write_records(evaluation, synthesize(3, seed=2, max_turns=2, keyword_free=True))
    out = tmp_path / "run"

    def run(seed: int) -> None:
        assert main(tiny_run_args(tiny_model_dir, out, data, "--eval-data", str(evaluation),
                                  "--prompt-choice", "fixed", "--seed", str(seed))) == 0

    run(0)
    fewshot = [r.id for r in read_records(out / "data" / "fewshot.jsonl")]
    neurons = tmp_path / "mine.json"
    shutil.copy(out / "neurons.json", neurons)
    ablate = ["ablate", str(out), "--neurons", str(neurons), "--name", "mine", "--quiet"]
    assert main(ablate) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["timings"]  # damaged: the next run resumes without comparing settings
    (out / "manifest.json").write_text(json.dumps(manifest))
    for store in ("conditions.jsonl", "probe_conditions.jsonl"):  # as their refusals say
        (out / store).unlink()
    run(1)
    assert [r.id for r in read_records(out / "data" / "fewshot.jsonl")] != fewshot
    capsys.readouterr()
    assert main(ablate) == 2
    store = out / "methods" / "mine" / "conditions.jsonl"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {store}: written for different evaluation data, neurons, model or prompt; "
        "delete it and rerun the same command to recompute its conditions")
    store.unlink()
    assert main(ablate) == 0
    baseline = next(e for k, e in _entries(out / "conditions.jsonl").items()
                    if k.startswith("baseline/"))
    assert _entries(store)[baseline["key"]]["predictions"] == baseline["predictions"]
