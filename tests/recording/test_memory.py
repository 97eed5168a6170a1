"""The recorder's memory stays flat as the data grows: activations are reduced, never kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WIDTH = 4096  # wide FFN, so that keeping activations would cost hundreds of MiB

MEASURE = """
import resource, sys
from emoneuron.data.synth import synthesize
from emoneuron.models import load
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

model = load(sys.argv[1])
record(model, synthesize(10, seed=0), RecordConfig(token_policy="all"), progress=False)
small = peak_mib()
record(model, synthesize(100, seed=0), RecordConfig(token_policy="all"), progress=False)
print(small, peak_mib())
"""


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from conftest import build_word_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_word_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32,
                                         intermediate_size=WIDTH, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         pad_token_id=tokenizer.pad_token_id))
    directory = tmp_path_factory.mktemp("wide-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_recording_memory_is_flat_for_ten_times_the_data(wide_model_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", MEASURE, str(wide_model_dir)],
                            capture_output=True, text=True, check=True)
    small, large = map(float, result.stdout.split())
    # 600 dialogues of about 40 tokens: keeping the site activations of both layers would
    # take 600 * 40 * 2 * 4096 * 4 bytes, about 750 MiB more than the 60-dialogue run. The
    # allocator's own growth (longer batches, thread arenas) varied from under 50 to about 150 MiB
    # between machines and loads, so the bound sits between that noise and what keeping costs.
    assert large - small < 250, (small, large)
