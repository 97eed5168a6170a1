"""Shared fixtures: tiny random models of every supported family, an offline tokenizer, records.

Nothing is downloaded. Each model is built from its config with a fixed seed, in eval mode and
float32, and is small enough that a forward pass takes milliseconds. Models are built once per
session; tests must not modify them (patches go through ``monkeypatch`` and are undone).

torch and transformers are imported inside the fixtures: importing them takes seconds, which a
session that runs no model test (say ``pytest tests/data/test_synth.py``) should not pay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from emoneuron.data.schema import Record, Turn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from emoneuron.models.loading import LoadedModel

VOCAB = 384  # model vocabulary; the tokenizer's is smaller (checked below)
HIDDEN = 32
HEADS = 4
MAX_POSITIONS = 1024

# Training text for the in-memory byte-level BPE. Byte-level means any text encodes; the merges
# only make the tokens look like a real tokenizer's (multi-character, leading-space words).
CORPUS = (
    "A: I can't believe you did that again, I am so angry right now!",
    "B: Calm down, it was only a joke. Why are you so upset?",
    "A: That smell is disgusting, the milk went off a week ago.",
    "B: I'm scared of the dark, something moved behind the door.",
    "A: We won the match! I am so happy today, what a wonderful day.",
    "B: I miss her every single day, the house feels empty and sad.",
    "A: Wow, I did not expect that at all, what a surprise!",
    "Teacher: Please sit down and open your books to the next page.",
)

# family -> (intermediate, layers), hidden is HIDDEN. The intermediate sizes differ from each
# other and from 4 * HIDDEN (GPT-2's default n_inner), so a width from the wrong field shows.
FAMILY_SHAPES: dict[str, tuple[int, int]] = {
    "llama": (80, 2),
    "mistral": (72, 2),
    "qwen2": (88, 2),
    "gemma3": (56, 3),
    "gpt2": (72, 2),
    "gpt-neox": (96, 2),
}
FAMILIES = tuple(FAMILY_SHAPES)
# make_tiny also builds these, around another family's tiny text model; the parametrised
# ``tiny`` fixture leaves them out (a vision tower adds nothing its tests check).
WRAPPED = {"gemma3-multimodal": "gemma3"}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with a BOS post-processor (offsets (0, 0)) and a pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=340, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    bos = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=True),
        processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                      special_tokens=[("<bos>", bos)]),
    ])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>",
                                      bos_token="<bos>", eos_token="<eos>")
    assert len(wrapped) <= VOCAB
    return wrapped


def _multimodal_config(text: Any) -> Any:
    """Gemma 3's image-text model around the tiny text config: a one-layer vision tower and
    image tokens at the top of the vocabulary, which the tokenizer never produces."""
    from transformers import Gemma3Config, SiglipVisionConfig

    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, image_size=28, patch_size=14)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                        boi_token_index=VOCAB - 3, eoi_token_index=VOCAB - 2,
                        image_token_index=VOCAB - 1)


def _config(family: str, tokenizer: PreTrainedTokenizerFast) -> Any:
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config
    from transformers.models.gemma3 import Gemma3TextConfig

    if family in WRAPPED:
        return _multimodal_config(_config(WRAPPED[family], tokenizer))
    intermediate, layers = FAMILY_SHAPES[family]
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    common = {"vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": intermediate,
              "num_hidden_layers": layers, "num_attention_heads": HEADS,
              "max_position_embeddings": MAX_POSITIONS, **ids}
    if family == "llama":
        return LlamaConfig(num_key_value_heads=2, **common)
    if family == "mistral":
        return MistralConfig(num_key_value_heads=2, sliding_window=None, **common)
    if family == "qwen2":
        return Qwen2Config(num_key_value_heads=2, **common)
    if family == "gemma3":
        # Small sliding window on the first two layers so both attention kinds run.
        return Gemma3TextConfig(num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
                                sliding_window=8,
                                layer_types=["sliding_attention", "sliding_attention",
                                             "full_attention"], **common)
    if family == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_inner=intermediate, n_layer=layers,
                          n_head=HEADS, n_positions=MAX_POSITIONS, **ids)
    if family == "gpt-neox":
        return GPTNeoXConfig(rotary_pct=0.5, **common)
    raise KeyError(family)


def _model_class(family: str) -> Any:
    import transformers
    from transformers.models.gemma3 import Gemma3ForCausalLM, Gemma3ForConditionalGeneration

    return {"llama": transformers.LlamaForCausalLM, "mistral": transformers.MistralForCausalLM,
            "qwen2": transformers.Qwen2ForCausalLM, "gemma3": Gemma3ForCausalLM,
            "gemma3-multimodal": Gemma3ForConditionalGeneration,
            "gpt2": transformers.GPT2LMHeadModel,
            "gpt-neox": transformers.GPTNeoXForCausalLM}[family]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def make_tiny(tokenizer: PreTrainedTokenizerFast) -> Iterator[Callable[[str], LoadedModel]]:
    """``make_tiny(family)``: the session's tiny random model of that family (built once); every
    family of :data:`emoneuron.models.adapters.ADAPTERS`.

    While model tests run, torch uses one intra-op thread: these models are so small that
    OpenMP's thread hand-off dominates (on a busy two-core machine a 30x32 matmul took 16 ms with
    two threads and 15 us with one; the model tests went from 60 s to under 1 s)."""
    import torch

    from emoneuron.models.adapters import adapter_for
    from emoneuron.models.loading import LoadedModel

    cache: dict[str, LoadedModel] = {}

    def make(family: str) -> LoadedModel:
        if family not in cache:
            config = _config(family, tokenizer)
            torch.manual_seed(0)
            model = _model_class(family)(config).to(torch.float32).eval()
            if family.startswith("gemma3"):
                # Gemma's RMSNorm scales by (1 + weight) with weight initialised to 0; random
                # norm weights make the tiny model less uniform across layers.
                with torch.no_grad():
                    for name, parameter in model.named_parameters():
                        if name.endswith("norm.weight"):
                            parameter.normal_(0.0, 0.2)
            cache[family] = LoadedModel(name=f"tiny-{family}", model=model, tokenizer=tokenizer,
                                        adapter=adapter_for(model), directory=None,
                                        instruct=False)
        return cache[family]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny(request: pytest.FixtureRequest, make_tiny: Callable[[str], LoadedModel]) -> LoadedModel:
    """Parametrised over every supported family."""
    return make_tiny(request.param)


def _record(id_: str, emotion: str, *turns: tuple[str, str]) -> Record:
    return Record(id=id_, emotion=emotion,
                  turns=tuple(Turn(speaker=speaker, text=text) for speaker, text in turns),
                  source="test")


@pytest.fixture(scope="session")
def records() -> list[Record]:
    """Eight dialogues of four emotions, 1 to 3 turns, lengths differing so batches pad."""
    return [
        _record("r0", "anger", ("A", "I can't believe you did that again!"),
                ("B", "Calm down, it was only a joke.")),
        _record("r1", "happiness", ("A", "We won!")),
        _record("r2", "sadness", ("A", "I miss her every single day."),
                ("B", "The house feels empty without her."),
                ("A", "I know, I know. It is sad.")),
        _record("r3", "fear", ("Teacher", "Something moved behind the door."),
                ("Student", "I'm scared.")),
        _record("r4", "anger", ("A", "So angry right now!")),
        _record("r5", "happiness", ("B", "What a wonderful day, I am so happy today."),
                ("A", "Me too, what a match.")),
        _record("r6", "fear", ("A", "Did you hear that noise? I'm really scared of the dark.")),
        _record("r7", "sadness", ("B", "Sad."), ("A", "Why?")),
    ]


def build_word_tokenizer(words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer in which every label word is one token, as in real models'
    vocabularies; :class:`emoneuron.causal.evaluation.classifier.Classifier` requires that."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from emoneuron.causal.evaluation.classifier import INSTRUCTION
    from emoneuron.data.schema import EMOTIONS

    vocabulary = ["<pad>", "<unk>", *EMOTIONS]
    pre = pre_tokenizers.Whitespace()
    for text in (*CORPUS, INSTRUCTION, "Dialogue: Emotion: N/A", *words):
        for piece, _ in pre.pre_tokenize_str(text):
            if piece not in vocabulary:
                vocabulary.append(piece)
    vocabulary = vocabulary[:VOCAB]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocabulary)},
                                           unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.fixture(scope="session")
def make_word_tiny(make_tiny: Callable[[str], LoadedModel]) -> Callable[[str], LoadedModel]:
    """``make_word_tiny(family)``: the tiny model of ``make_tiny`` with a word-level tokenizer."""
    import dataclasses

    word_tokenizer = build_word_tokenizer()

    def make(family: str) -> LoadedModel:
        return dataclasses.replace(make_tiny(family), tokenizer=word_tokenizer)

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory,
                   make_word_tiny: Callable[[str], LoadedModel]) -> Path:
    """The tiny llama of ``make_word_tiny`` saved as a Hugging Face model directory."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    loaded = make_word_tiny("llama")
    loaded.model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
                 ) -> tuple[Path, Path]:
    """A finished tiny run directory (``file_safety.tiny_run_args``) and the data file it ran on;
    tests copy it before changing anything."""
    from file_safety import tiny_run_args

    from emoneuron.cli import main
    from emoneuron.data.schema import write_records
    from emoneuron.data.synth import synthesize

    base = tmp_path_factory.mktemp("finished")
    data = base / "data.jsonl"
    write_records(data, synthesize(8, seed=0, max_turns=2))
    out = base / "run"
    assert main(tiny_run_args(tiny_model_dir, out, data)) == 0
    return out, data
