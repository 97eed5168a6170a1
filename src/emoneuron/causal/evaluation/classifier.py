"""Emotion classification by answer log-probability: no generation, no parsing.

The prompt is a few-shot instruction: one worked example per emotion, then the dialogue to
classify, then the answer format's question (:mod:`emoneuron.causal.evaluation.answers`) ending in
its cue. In the default ``label`` format the cue is ``Emotion:`` and the prediction is the emotion
whose label word (with a leading space, e.g. `` anger``) gets the highest log-probability as the
next token; ``letters`` scores option letters A-F listed in a per-dialogue order, ``yesno`` asks one
question per emotion and scores `` Yes`` against `` No``. Every answer word must be a single
token of the tokenizer (checked at start); all are for the embedded models.

Two prompt styles: ``plain`` text, and ``chat``, the same instruction and examples laid out as
system / user / assistant turns with the tokenizer's chat template, the answer starting with the
cue in the assistant turn. ``auto`` (the default) picks chat for instruct models whose
tokenizer has a chat template, plain otherwise. On SmolLM2 both score alike (calibrated, 90
held-out synthetic dialogues: plain 0.92, chat 0.92).

Cost: the shared few-shot prefix is run once per call and its key/value cache is reused by every
batch, so each query costs only its own tokens; logits are computed at one position per row.
A dialogue is one query (``yesno``: six). Interventions active around
:meth:`Classifier.predict` apply to the prefix as well.

Measured on SmolLM2-135M (``bench/answer_formats.py``: 10 synthetic dialogues per emotion,
``synthesize(10, seed=7, max_turns=2)``, 1-shot plain prompt), accuracy calibrated / raw and
seconds per dialogue: label 0.47 / 0.27, 1.8 s; letters 0.22 / 0.22, 4.9 s (2.7x: the options
and a longer prefix); yesno 0.13 / 0.17, 16.7 s (9.4x: six queries). The 2 CPU cores were
shared with other jobs (load average 7-9): the seconds are several times a quiet machine's,
their ratios hold. The 135M model answers neither alternative format above chance (yesno:
nearly always surprise), so the format-invariance check needs a larger model.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from emoneuron.causal.config import AnswerFormatName
from emoneuron.causal.evaluation.answers import CONTENT_FREE, AnswerFormat, Question, answer_format
from emoneuron.causal.evaluation.intervene import TokenScope
from emoneuron.causal.evaluation.lastcache import (
    Kept,
    KeptPositions,
    appendable,
    bytes_per_position,
    extended,
    positions_from,
)
from emoneuron.data.render import render_dialogue, tokens_in_spans
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel

INSTRUCTION = answer_format("label").instruction
CHANCE = 1 / len(EMOTIONS)


PLAIN_BEFORE = "Dialogue:\n"


def query_text(record: Record, answers: AnswerFormat | None = None,
               question: Question | None = None) -> str:
    """The plain query: the dialogue, the format's question (default: label) and its cue."""
    answers = answers or answer_format("label")
    question = question or answers.questions(record)[0]
    return f"{PLAIN_BEFORE}{render_dialogue(record).text}{question.text}\n{answers.cue}"


def prompt_prefix(shots: Sequence[Record], answers: AnswerFormat | None = None) -> str:
    """The plain few-shot prefix: the instruction and each shot answered."""
    answers = answers or answer_format("label")
    examples = [(shot, *answers.example(shot, k)) for k, shot in enumerate(shots)]
    return answers.instruction + "".join(f"{query_text(shot, answers, question)} {answer}\n\n"
                                         for shot, question, answer in examples)


PROMPT_STYLES = ("auto", "plain", "chat")
_QUERY_SLOT = "\x00dialogue\x00"


def _chat(shots: Sequence[Record], answers: AnswerFormat,
          query: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": answers.instruction.strip()}]
    for position, shot in enumerate(shots):
        question, answer = answers.example(shot, position)
        messages += [{"role": "user",
                      "content": f"{PLAIN_BEFORE}{render_dialogue(shot).text}{question.text}"},
                     {"role": "assistant", "content": f"{answers.cue} {answer}"}]
    if query is not None:
        messages.append({"role": "user", "content": f"{PLAIN_BEFORE}{query}"})
    return messages


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt_parts(tokenizer: PreTrainedTokenizerBase, shots: Sequence[Record],
                      answers: AnswerFormat | None = None) -> tuple[str, str, str]:
    """The chat prompt as (shared prefix, text before the dialogue, text after the dialogue
    and its question); ``answers`` defaults to the label format."""
    answers = answers or answer_format("label")
    if not has_chat_template(tokenizer):
        raise UserError("this tokenizer has no chat template; use --prompt plain")
    parts = _appended_chat(tokenizer, shots, answers)
    if parts is None:
        raise UserError("this chat template does not extend a conversation by appending; "
                        "use --prompt plain")
    return parts


def chat_works(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether a chat prompt can be built with this tokenizer: it has a template, and the
    template extends a conversation by appending (a property of the template, checked on the
    instruction alone): what the styles compared by ``--prompt-choice best`` and ``emoneuron
    evaluate`` need, which leave a chat prompt out where it cannot work."""
    return (has_chat_template(tokenizer)
            and _appended_chat(tokenizer, [], answer_format("label")) is not None)


def _appended_chat(tokenizer: PreTrainedTokenizerBase, shots: Sequence[Record],
                   answers: AnswerFormat) -> tuple[str, str, str] | None:
    """:func:`chat_prompt_parts`, or None where the template does not extend the shared
    prefix by appending the query."""
    prefix = str(tokenizer.apply_chat_template(_chat(shots, answers), tokenize=False))
    full = str(tokenizer.apply_chat_template(_chat(shots, answers, _QUERY_SLOT), tokenize=False,
                                             add_generation_prompt=True)) + answers.cue
    if not full.startswith(prefix) or full.count(_QUERY_SLOT) != 1:
        return None
    before, after = full[len(prefix):].split(_QUERY_SLOT)
    return prefix, before, after


def order_shots(shots: Sequence[Record], seed: int, per_emotion: int = 1) -> list[Record]:
    """``per_emotion`` shots of each emotion (0: a zero-shot prompt) in a seeded order, so the
    last shot's label carries no fixed bias."""
    by_emotion = {emotion: [s for s in shots if s.emotion == emotion] for emotion in EMOTIONS}
    missing = [emotion for emotion, found in by_emotion.items() if len(found) < per_emotion]
    if missing:
        raise UserError(f"too few few-shot examples for {', '.join(missing)}: a {per_emotion}-"
                        f"shot-per-emotion prompt needs {per_emotion} dialogue(s) per emotion "
                        "beyond the evaluation split")
    chosen = [shot for found in by_emotion.values() for shot in found[:per_emotion]]
    random.Random(seed).shuffle(chosen)
    return chosen


class PromptModel(Protocol):
    """What a prompt is built from: a :class:`~emoneuron.models.loading.LoadedModel`, or the
    :class:`~emoneuron.models.loading.ModelTokenizer` read before the weights load."""

    @property
    def name(self) -> str: ...

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...

    @property
    def instruct(self) -> bool: ...

    @property
    def context_length(self) -> int: ...


def resolved_style(model: PromptModel, style: str) -> str:
    """``auto``: chat for instruct models whose tokenizer has a chat template, else plain."""
    if style != "auto":
        return style
    return "chat" if model.instruct and has_chat_template(model.tokenizer) else "plain"


MIN_QUERY_TOKENS = 16  # the least room a prompt leaves its query, or the prompt is refused


@dataclass(frozen=True)
class PromptParts:
    """A classifier's prompt, from the tokenizer alone (:func:`prompt_parts`)."""

    style: str  # plain or chat (auto resolved)
    answers: AnswerFormat
    answer_ids: torch.Tensor  # the scored token of each answer word
    prefix_ids: list[int]  # the shared few-shot prefix
    before: str  # the text before each dialogue
    after: str  # the text after the dialogue and its question


def prompt_parts(model: PromptModel, shots: Sequence[Record], style: str = "auto",
                 format_name: str = "label", seed: int = 0,
                 option: str = "--answer-format") -> PromptParts:
    """The prompt in ``style`` and the answer format ``format_name`` (asked for by the command
    line's ``option``, which a refusal names), built and checked on the tokenizer alone: the
    style and format exist, the answer words are single distinct tokens, a chat prompt's
    template exists and extends a conversation, the few-shot prefix leaves room in the
    context. A command calls it for every prompt it will use before the weights load."""
    if style not in PROMPT_STYLES:
        raise UserError(f"unknown prompt style {style!r}: use auto, plain or chat")
    if format_name not in get_args(AnswerFormatName):
        raise UserError(f"unknown answer format {format_name!r}: use one of "
                        f"{', '.join(get_args(AnswerFormatName))}")
    style = resolved_style(model, style)
    answers = answer_format(format_name, seed)
    answer_ids = _answer_ids(model, answers, option)
    tokenizer = model.tokenizer
    if style == "chat":
        prefix, before, after = chat_prompt_parts(tokenizer, shots, answers)
        # The template writes any special tokens (BOS, turn markers) itself.
        prefix_ids = tokenizer.encode(prefix, add_special_tokens=False)
    else:
        before, after = PLAIN_BEFORE, "\n" + answers.cue
        prefix_ids = tokenizer.encode(prompt_prefix(shots, answers), add_special_tokens=True)
    if model.context_length - len(prefix_ids) < MIN_QUERY_TOKENS:
        raise UserError(f"the few-shot prompt takes {len(prefix_ids)} of the model's "
                        f"{model.context_length} tokens; give fewer --shots or shorter "
                        "dialogues")
    return PromptParts(style, answers, answer_ids, prefix_ids, before, after)


def _answer_ids(model: PromptModel, answers: AnswerFormat, option: str) -> torch.Tensor:
    """The token of each answer word after a space, checked to be single and distinct."""
    tokenizer, words = model.tokenizer, answers.answers
    ids = [tokenizer.encode(f" {word}", add_special_tokens=False) for word in words]
    # Round trip too: a word missing from the vocabulary is one token, but <unk>.
    decoded = [str(tokenizer.decode(i)).strip() for i in ids]
    if (any(len(i) != 1 for i in ids) or len({i[0] for i in ids}) != len(words)
            or decoded != list(words)):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        fix = ("this tokenizer is not supported yet" if answers.name == "label"
               else "use --answer-format label" if option == "--answer-format"
               else f"give {option} without {answers.name}")
        raise UserError(f"{model.name} (tokenizer {name}): the {answers.name} format's answer "
                        f"words are not single distinct tokens "
                        f"({dict(zip(words, ids, strict=True))}); {fix}")
    return torch.tensor([i[0] for i in ids])


@dataclass(frozen=True)
class QueryBatch:
    """Right-padded queries that continue the shared prefix's cache."""

    input_ids: torch.Tensor  # (N, T) query tokens, padded on the right
    attention_mask: torch.Tensor  # (N, prefix + T): the prefix and each row's real tokens
    last: torch.Tensor  # (N,) position in ``input_ids`` of each row's scored (last real) token


@dataclass
class Classifier:
    """Scores the six emotions for dialogues (:meth:`predict`) under a prompt ``style`` and an
    ``answer_format`` (``seed`` draws the letters' per-dialogue option orders).

    >>> classifier = Classifier(emoneuron.load("smollm2-135m"), shots,  # doctest: +SKIP
    ...                         answer_format="letters", seed=0)
    >>> classifier.predict(records).argmax(axis=1)  # doctest: +SKIP
    array([0, 3, ...])
    """

    loaded: LoadedModel
    shots: list[Record]
    batch_size: int = 16
    calibrate: bool = True
    style: str = "auto"
    answer_format: str = "label"
    seed: int = 0
    # `last` scope: bytes of unchanged keys and values kept per batch of queries, so a condition
    # recomputes only each query's last position (emoneuron.causal.evaluation.lastcache); 0:
    # recompute all.
    last_scope_bytes: int = 1 << 30
    _before: str = field(init=False, default="")
    _after: str = field(init=False, default="")
    # Input of layer L for each batch of query tokens, kept for `unchanged_below=L`.
    _layer_inputs: dict[tuple[int, tuple[int, ...], bytes], torch.Tensor] = field(
        init=False, default_factory=dict)
    _kept: KeptPositions = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._kept = KeptPositions(self.last_scope_bytes)
        parts = prompt_parts(self.loaded, self.shots, self.style, self.answer_format, self.seed)
        self.style, self.answers, self.answer_ids = parts.style, parts.answers, parts.answer_ids
        self.prefix_ids, self._before, self._after = parts.prefix_ids, parts.before, parts.after

    def fit(self, records: Sequence[Record]) -> tuple[list[Record], int]:
        """The records with their earliest turns dropped, and then the first turn left cut from
        its start, until prefix + query fits the model's context (at least
        MIN_QUERY_TOKENS: :func:`prompt_parts`); and how many were cut."""
        budget = self.loaded.context_length - len(self.prefix_ids)
        fitted, cut = [], 0
        for record in records:
            turns = self._turns_within(record, budget)
            if turns != record.turns:
                cut += 1
                record = dataclasses.replace(record, turns=turns,
                                             meta={**record.meta, "truncated": True})
            fitted.append(record)
        return fitted, cut

    def _turns_within(self, record: Record, budget: int) -> tuple[Turn, ...]:
        """The fewest earliest turns to drop (then the first kept turn cut from its start) for
        the query to fit ``budget`` tokens. One tokenisation of the whole dialogue estimates
        where the kept turns start (linear in its length, however many turns it has); exact
        tokenisations of the kept turns around that estimate then settle the same turn as
        dropping one turn at a time would."""
        longest = max(self.answers.questions(record), key=lambda q: len(q.text))
        text, spans = self._query_parts(record, longest)
        starts = [start for start, _ in self.loaded.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
        if len(starts) <= budget:
            return record.turns
        turn_starts = [span[0] - len(f"{turn.speaker}: ")
                       for span, turn in zip(spans, record.turns, strict=True)]
        first_token = bisect.bisect_left(starts, turn_starts[0])

        def estimate(first_turn: int) -> int:  # tokens once the turns before it are dropped
            return len(starts) - (bisect.bisect_left(starts, turn_starts[first_turn])
                                  - first_token)

        def fits(turns: tuple[Turn, ...]) -> bool:
            kept = dataclasses.replace(record, turns=turns)
            return all(len(self.loaded.tokenizer.encode(self.query(kept, question),
                                                        add_special_tokens=False)) <= budget
                       for question in self.answers.questions(kept))

        last = len(record.turns) - 1
        first = next((k for k in range(last) if estimate(k) <= budget), last)
        while first < last and not fits(record.turns[first:]):
            first += 1
        while first > 1 and fits(record.turns[first - 1:]):  # all of them: too long, known
            first -= 1
        turns = record.turns[first:]
        while first == last and not fits(turns):  # one turn too long alone: cut its words
            words = turns[0].text.split()
            turns = (Turn(turns[0].speaker, " ".join(words[len(words) // 4 + 1:]) or "..."),)
        return turns

    def query(self, record: Record, question: Question | None = None) -> str:
        """The text that follows the shared prefix for ``question`` about ``record`` (default:
        its first, the only one except in the yesno format)."""
        return self._query_parts(record, question)[0]

    def _query_parts(self, record: Record, question: Question | None = None
                     ) -> tuple[str, tuple[tuple[int, int], ...]]:
        """The query text and the character spans of the dialogue's own words in it."""
        question = question or self.answers.questions(record)[0]
        rendered = render_dialogue(record)
        spans = tuple((start + len(self._before), end + len(self._before))
                      for start, end in rendered.spans)
        return self._before + rendered.text + question.text + self._after, spans

    @property
    def description(self) -> str:
        calibration = ", contextually calibrated" if self.calibrate else ""
        per_emotion = len(self.shots) // len(EMOTIONS)
        examples = (f"{per_emotion} example(s) per emotion" if self.shots
                    else "no examples: zero-shot")
        return (f"{len(self.shots)}-shot {self.style} prompt ({examples}), "
                f"prediction = {self.answers.rule}{calibration}")

    def predict(self, records: Sequence[Record], progress: bool = False,
                unchanged_below: int = 0, scope: TokenScope | None = None) -> np.ndarray:
        """Emotion scores for each record, shape (N, 6) aligned with EMOTIONS, calibrated when
        ``calibrate`` is on; the argmax of a row is the prediction. In the label format a
        score is the label word's log-probability (minus the content-free dialogue's).

        ``unchanged_below``: the caller promises that no active intervention touches the layers
        below this one (a sweep condition masking only the top third, say). Their output is
        then the same in every such call: the first call keeps it per batch, later calls skip
        those layers and start from it.

        ``scope``: the token scope of an active intervention restricted to the ``dialogue`` or
        the ``last`` position; it is told those positions for every pass (none of the shared
        prefix's, nor of the format's question: only the dialogue's words, or the scored
        position).

        With a ``last`` scope every earlier position is the unchanged model's: each batch's
        queries but their last tokens run once without the intervention, their keys and values
        are kept (``last_scope_bytes``, :mod:`emoneuron.causal.evaluation.lastcache`), and each call
        runs only each query's last token on them; ``unchanged_below`` is not needed there. The
        caller promises that the scoped intervention is the only one active in such calls, as
        the kept positions are reused by the next; :meth:`forget_reused` drops them."""
        rows, bias = self._answer_scores(records, self.calibrate, progress, unchanged_below,
                                         scope)
        return self._emotion_scores(records, rows, bias if self.calibrate else None)

    def predict_calibrated_and_not(self, records: Sequence[Record],
                                   progress: bool = False) -> dict[bool, np.ndarray]:
        """:meth:`predict`'s scores without (False) and with (True) calibration, from one pass."""
        rows, bias = self._answer_scores(records, True, progress)
        return {False: self._emotion_scores(records, rows, None),
                True: self._emotion_scores(records, rows, bias)}

    def _answer_scores(self, records: Sequence[Record], calibrating: bool, progress: bool,
                       unchanged_below: int = 0, scope: TokenScope | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """Answer-token log-probabilities of every query of ``records`` in order, (Q, K); and,
        when ``calibrating``, the format's bias from the content-free queries."""
        queries = [(r, q) for r in records for q in self.answers.questions(r)]
        calibration = self.answers.calibration() if calibrating else []
        queries += [(CONTENT_FREE, q) for q in calibration]
        encoded = [self.encode(record, question) for record, question in queries]
        suffixes = [ids for ids, _ in encoded]
        order = sorted(range(len(queries)), key=lambda i: len(suffixes[i]))
        scores = np.zeros((len(queries), len(self.answer_ids)), dtype=np.float64)
        with torch.inference_mode():
            if scope is not None:
                scope.mask = torch.zeros((1, len(self.prefix_ids)), dtype=torch.bool)
            cache, last = self._prefix_for(scope)
            self._kept.start_call()
            starts = range(0, len(order), self.batch_size)
            for start in tqdm(starts, desc="evaluate", unit="batch", disable=not progress,
                              leave=False):
                rows = order[start:start + self.batch_size]
                query = self.query_batch([suffixes[i] for i in rows])
                scored = None if last is None else self._score_last(query, cache, last)
                if scored is None:
                    if scope is not None:
                        scope.mask = _scope_mask(scope.tokens, [encoded[i] for i in rows])
                    scored = self._score_batch(query, cache, unchanged_below)
                scores[rows] = scored
        if scope is not None:
            scope.mask = None
        if not calibration:
            return scores, None
        return scores[:-len(calibration)], self.answers.bias(scores[-len(calibration):])

    def _emotion_scores(self, records: Sequence[Record], rows: np.ndarray,
                        bias: np.ndarray | None) -> np.ndarray:
        """(N, 6): each record's rows (minus the bias) combined by the format."""
        table = np.zeros((len(records), len(EMOTIONS)), dtype=np.float64)
        first = 0
        for n, record in enumerate(records):
            questions = self.answers.questions(record)
            own = rows[first:first + len(questions)]
            table[n] = self.answers.emotion_scores(questions, own if bias is None else own - bias)
            first += len(questions)
        return table

    def encode(self, record: Record, question: Question | None = None
               ) -> tuple[list[int], list[bool]]:
        """Query token ids (what follows the shared prefix) for ``question`` about ``record``
        (default: its first), and which of them carry the dialogue's own words."""
        text, spans = self._query_parts(record, question)
        encoded = self.loaded.tokenizer(text, add_special_tokens=False,
                                        return_offsets_mapping=True)
        return list(encoded["input_ids"]), tokens_in_spans(encoded["offset_mapping"], spans)

    def prefix_cache(self) -> Any:
        """The key/value cache of the shared few-shot prefix; the caller picks the grad mode."""
        prefix = torch.tensor([self.prefix_ids], device=self.loaded.device)
        return self.loaded.model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache

    def query_batch(self, suffixes: Sequence[Sequence[int]]) -> QueryBatch:
        """The model inputs that continue :meth:`prefix_cache` with these queries."""
        n, length, offset = len(suffixes), max(len(s) for s in suffixes), len(self.prefix_ids)
        pad = int(self.loaded.tokenizer.pad_token_id)
        # Right padding keeps every real token at its true position after the prefix.
        input_ids = torch.full((n, length), pad, dtype=torch.long)
        attention = torch.zeros((n, offset + length), dtype=torch.long)
        attention[:, :offset] = 1
        for row, ids in enumerate(suffixes):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, offset:offset + len(ids)] = 1
        return QueryBatch(input_ids, attention, torch.tensor([len(ids) - 1 for ids in suffixes]))

    def run_batch(self, batch: QueryBatch, prefix_cache: Any) -> torch.Tensor:
        """Log-probabilities over the whole vocabulary at each row's scored position, (N, V)
        float32, from a copy of ``prefix_cache`` (which stays reusable)."""
        device = self.loaded.device
        keep = torch.unique(batch.last)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(batch.last))
        logits = self.loaded.model(input_ids=batch.input_ids.to(device),
                                   attention_mask=batch.attention_mask.to(device), cache=cache,
                                   use_cache=True, logits_to_keep=keep.to(device)).logits
        # A model split over devices may return its logits from the last one.
        at_last = logits[torch.arange(len(batch.last), device=logits.device),
                         torch.searchsorted(keep, batch.last).to(logits.device)]
        return torch.log_softmax(at_last.float(), dim=-1)

    def _score_batch(self, batch: QueryBatch, prefix_cache: object,
                     unchanged_below: int) -> np.ndarray:
        with self._lower_layers_reused(unchanged_below, batch.input_ids):
            log_probabilities = self.run_batch(batch, prefix_cache)
        return log_probabilities[:, self.answer_ids].cpu().numpy()

    @property
    def kept_bytes(self) -> int:
        """Bytes of the ``last`` scope's kept positions now, at most ``last_scope_bytes`` (the
        prefix's, kept once, not counted)."""
        return self._kept.bytes

    def forget_reused(self) -> None:
        """Drop what calls kept for later ones (lower layers' inputs, the ``last`` scope's
        positions): for when this classifier's next predictions are on other dialogues or an
        otherwise changed model."""
        self._layer_inputs.clear()
        self._kept.clear()

    def _prefix_for(self, scope: TokenScope | None) -> tuple[Any, TokenScope | None]:
        """:meth:`prefix_cache`, and ``scope`` when it is a ``last`` scope whose position is
        recomputed alone (else None). That needs a cache the last tokens can be appended to
        (:func:`~emoneuron.causal.evaluation.lastcache.appendable`); its prefix, on which the scope
        never acts, is then the unchanged one, kept for later calls."""
        if scope is None or scope.tokens != "last" or self.last_scope_bytes <= 0:
            return self.prefix_cache(), None
        if self._kept.prefix is None:
            cache = self.prefix_cache()
            if not appendable(cache):
                return cache, None
            self._kept.prefix = cache
        return self._kept.prefix, scope

    def _kept_positions(self, batch: QueryBatch, prefix_cache: Any,
                        scope: TokenScope) -> Kept | None:
        """The batch's kept positions, computed now when they fit the budget; None when not."""
        key = (tuple(batch.input_ids.shape), batch.input_ids.numpy().tobytes())
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        rows, length = batch.input_ids.shape
        if length < 2 or not self._kept.room_for(
                rows * (length - 1) * bytes_per_position(prefix_cache)):
            return None
        kept = self._unchanged_positions(batch, prefix_cache, scope)
        self._kept.put(key, kept)
        return kept

    def _unchanged_positions(self, batch: QueryBatch, prefix_cache: Any,
                             scope: TokenScope) -> Kept:
        """Keys and values of every query position but the longest row's last, with the scoped
        intervention acting nowhere (a shorter row's own last token and padding are kept too,
        and masked when used)."""
        rows, length = batch.input_ids.shape
        scope.mask = torch.zeros((rows, length - 1), dtype=torch.bool)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(rows)
        device = self.loaded.device
        self.loaded.model(input_ids=batch.input_ids[:, :-1].to(device),
                          attention_mask=batch.attention_mask[:, :-1].to(device), cache=cache,
                          use_cache=True, logits_to_keep=1)
        return positions_from(cache, len(self.prefix_ids))

    def _score_last(self, batch: QueryBatch, prefix_cache: Any,
                    scope: TokenScope) -> np.ndarray | None:
        """Answer log-probabilities from each row's last token alone, the intervention acting
        on it, at its true position, attending to the prefix and its own earlier tokens'
        kept positions; None when those are not kept (the batch then takes the full pass)."""
        kept = self._kept_positions(batch, prefix_cache, scope)
        if kept is None:
            return None
        rows = torch.arange(len(batch.last))
        offset, device = len(self.prefix_ids), self.loaded.device
        attention = batch.attention_mask.clone()
        attention[rows, offset + batch.last] = 0  # the kept, unchanged copy of the last token
        attention[:, -1] = 1  # the new position, after every kept one
        scope.mask = torch.ones((len(rows), 1), dtype=torch.bool)
        logits = self.loaded.model(
            input_ids=batch.input_ids[rows, batch.last].unsqueeze(1).to(device),
            attention_mask=attention.to(device),
            position_ids=(offset + batch.last).unsqueeze(1).to(device),
            cache=extended(prefix_cache, kept, len(rows)), use_cache=True).logits
        log_probabilities = torch.log_softmax(logits[:, -1].float(), dim=-1)
        return log_probabilities[:, self.answer_ids].cpu().numpy()

    @contextmanager
    def _lower_layers_reused(self, first: int, input_ids: torch.Tensor) -> Iterator[None]:
        if first == 0:
            yield
            return
        layers = self.loaded.adapter.layers(self.loaded.model)
        key = (first, tuple(input_ids.shape), input_ids.numpy().tobytes())
        kept = self._layer_inputs.get(key)
        if kept is None:
            def keep(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
                self._layer_inputs[key] = args[0]

            handle = layers[first].register_forward_pre_hook(keep)
            try:
                yield
            finally:
                handle.remove()
            return
        # The skipped layers would recompute exactly `kept`; each returns it instead. Only this
        # model instance is touched, and only inside the block. A layer of a model dispatched
        # with a device_map already has an instance `forward` (accelerate's hook wrapper): it
        # is put back, not deleted.
        skipped = list(layers[:first])
        own_forwards = [vars(layer).get("forward") for layer in skipped]
        for layer in skipped:
            layer.forward = lambda *args, **kwargs: kept
        try:
            yield
        finally:
            for layer, own_forward in zip(skipped, own_forwards, strict=True):
                if own_forward is None:
                    del layer.forward
                else:
                    layer.forward = own_forward


def _scope_mask(tokens: str, rows: Sequence[tuple[list[int], list[bool]]]) -> torch.Tensor:
    """(rows, longest) bool: each row's dialogue tokens, or its last real token."""
    mask = torch.zeros((len(rows), max(len(ids) for ids, _ in rows)), dtype=torch.bool)
    for row, (ids, in_dialogue) in enumerate(rows):
        if tokens == "last":
            mask[row, len(ids) - 1] = True
        else:
            mask[row, :len(ids)] = torch.tensor(in_dialogue)
    return mask
