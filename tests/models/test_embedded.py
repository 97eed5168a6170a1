"""The embedded SmolLM2: shape, label tokens, export, and a baseline far above chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emoneuron.causal.evaluation.classifier import CHANCE, Classifier, order_shots
from emoneuron.data.schema import EMOTIONS
from emoneuron.data.synth import synthesize
from emoneuron.models.embedded import EMBEDDED
from emoneuron.models.loading import LoadedModel, export, load


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load("smollm2-135m")  # converts the GGUF once per cache; later loads take ~1 s


def test_shape_matches_the_embedded_table(smollm2: LoadedModel) -> None:
    assert smollm2.adapter.family == "llama"
    assert (smollm2.n_layers, smollm2.width) == (EMBEDDED["smollm2-135m"].n_layers,
                                                 EMBEDDED["smollm2-135m"].width) == (30, 1536)
    assert smollm2.directory is not None and (smollm2.directory / "model.safetensors").is_file()


def test_few_shot_baseline_is_far_above_chance(smollm2: LoadedModel) -> None:
    records = synthesize(6, seed=123, max_turns=2)
    classifier = Classifier(smollm2, order_shots(records, 0), batch_size=16)
    held_out = [r for r in records if r not in classifier.shots]
    predicted = classifier.predict(held_out).argmax(axis=1)
    truth = np.array([EMOTIONS.index(r.emotion) for r in held_out])
    per_emotion = [np.mean(predicted[truth == e] == e) for e in range(len(EMOTIONS))]
    assert np.mean(per_emotion) > CHANCE + 0.3, per_emotion


def test_export_loads_in_plain_transformers(smollm2: LoadedModel, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = export("smollm2-135m", tmp_path / "export")
    model = AutoModelForCausalLM.from_pretrained(target)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    assert AutoTokenizer.from_pretrained(target).encode(" anger") == \
        smollm2.tokenizer.encode(" anger")
