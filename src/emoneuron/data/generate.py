"""LLM-written dialogues, the reference study's recipe: write, let judges vote, keep by majority.

For every topic x emotion x index a writer chat model writes a two-speaker dialogue meant to
convey the emotion without naming it; a writer dialogue that names its emotion anyway (see
:mod:`emoneuron.data.lexicon`) is discarded or flagged. Each judge model then labels the dialogue
with one of the six emotions (an answer that is no emotion counts as an abstention), and the
dialogue is kept when a strict majority of the judges chose the intended emotion.

Files, for ``--out gen.jsonl``:

* ``gen.items.jsonl``: the append-only journal, one line per finished item (kept or not, with
  its votes). A re-run skips the items it holds, so an interrupted run resumes where it stopped;
  a torn last line (a kill mid-write) is cut off and that item is done again.
* ``gen.jsonl``: the kept dialogues as records, rewritten from the journal at the end of a run.
* ``gen.agreement.json``: per-judge accuracy against the intended label, Fleiss' kappa across
  judges, kept and discarded counts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from emoneuron.data.chat import ChatFailure, ChatModel, RetryPolicy, open_chat_models
from emoneuron.data.lexicon import names_emotion
from emoneuron.data.schema import ALIASES, EMOTIONS, Record, Turn, normalize_emotion, write_records
from emoneuron.data.synth import TOPICS
from emoneuron.errors import UserError
from emoneuron.io import write_json
from emoneuron.options import at_least, check_seeds, finite

NAMING_POLICIES = ("discard", "flag")
# Dialogues per topic x emotion, at most: a record id holds the index in three digits, and 1000
# for each of the 52 topics and 6 emotions is already 312,000 writer requests (a mistyped
# --per-pair 99999999999 would build its item list until memory ran out).
MAX_PER_PAIR = 1000


@dataclass(frozen=True)
class GenerateConfig:
    """What ``emoneuron data generate`` writes and with which models.

    Args:
        model: the writer model (local name, or a model at the endpoint)
        judges: judge models; none given: the writer judges alone
        endpoint: an OpenAI-compatible URL; unset: every model is local
        api_key_env: the environment variable holding the endpoint's API key
        topics: topics to write about
        emotions: emotions to write
        per_pair: dialogues per topic x emotion (1 to 1000)
        min_turns: turns per dialogue, at least
        max_turns: turns per dialogue, at most
        writer_max_tokens: tokens the writer may answer with
        judge_max_tokens: tokens a judge may answer with
        temperature: the writer's sampling temperature (judges answer greedily)
        seed: seed of the writer's sampling and the items' order
        concurrency: requests in flight at once
        timeout: seconds before a request is given up
        max_retries: retries of a failed request
        backoff: seconds before the first retry; doubles each time (plus jitter)
        on_naming: a dialogue naming its emotion: discard it, or keep it flagged
        device: cpu, cuda, cuda:N or mps, for local models
    """

    model: str = "smollm2-135m"
    judges: tuple[str, ...] = ()
    endpoint: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    topics: tuple[str, ...] = tuple(topic.name for topic in TOPICS)
    emotions: tuple[str, ...] = EMOTIONS
    per_pair: int = 1
    min_turns: int = 4
    max_turns: int = 8
    writer_max_tokens: int = 400
    judge_max_tokens: int = 10
    temperature: float = 0.9
    seed: int = 0
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0
    on_naming: str = "discard"
    device: str = "cpu"

    def check(self) -> None:
        if not self.topics or not self.emotions:
            raise UserError("generate needs at least one topic and one emotion")
        for emotion in self.emotions:
            if normalize_emotion(emotion) != emotion:
                raise UserError(f"emotion {emotion!r}: use the canonical name "
                                f"{normalize_emotion(emotion)!r}")
        slugs = Counter(_slug(topic) for topic in self.topics)
        if not all(slugs) or max(slugs.values()) > 1:
            raise UserError("topics must be distinct and contain letters or digits; got "
                            f"{', '.join(sorted(t for t in self.topics if slugs[_slug(t)] != 1))}")
        if self.on_naming not in NAMING_POLICIES:
            raise UserError(f"on_naming {self.on_naming!r}: use discard or flag")
        if not 2 <= self.min_turns <= self.max_turns:
            raise UserError(f"turns {self.min_turns}..{self.max_turns}: need 2 <= min <= max")
        for name, value in (("per_pair", self.per_pair), ("concurrency", self.concurrency),
                            ("writer_max_tokens", self.writer_max_tokens),
                            ("judge_max_tokens", self.judge_max_tokens)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if self.per_pair > MAX_PER_PAIR:
            raise UserError(f"--per-pair {self.per_pair}: must be from 1 to {MAX_PER_PAIR} "
                            "(dialogues per topic x emotion)")
        for name in ("temperature", "timeout", "backoff"):
            finite(name, (getattr(self, name),))
        if self.max_retries < 0 or self.timeout <= 0 or self.backoff < 0:
            raise UserError("max_retries and backoff must be >= 0, timeout > 0")
        at_least("temperature", self.temperature, 0)
        check_seeds("seed", (self.seed,))

    @property
    def judge_models(self) -> tuple[str, ...]:
        return self.judges or (self.model,)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class Item:
    topic: str
    emotion: str
    index: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.topic, self.emotion, self.index)

    @property
    def record_id(self) -> str:
        return f"gen-{self.emotion}-{_slug(self.topic)}-{self.index:03d}"

    def seed(self, seed: int) -> int:
        return random.Random(f"{seed}-{self.topic}-{self.emotion}-{self.index}").getrandbits(31)


def items(config: GenerateConfig) -> list[Item]:
    return [Item(topic, emotion, index) for topic in config.topics
            for emotion in config.emotions for index in range(config.per_pair)]


# --- prompts and parsing -------------------------------------------------------------------

WRITER_SYSTEM = "You write short, natural, realistic dialogues between two people."
JUDGE_SYSTEM = "You read a dialogue and name the emotion it conveys. Answer with one word."


def writer_messages(item: Item, turns: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": WRITER_SYSTEM},
            {"role": "user", "content": (
                f"Write a dialogue of {turns} turns between two people, A and B, about "
                f"{item.topic}. Speaker A feels {item.emotion}. Convey it only through what "
                f"happened and how they react: never use the word {item.emotion!r}, any "
                "synonym of it, or any other emotion word. Write one turn per line as "
                "'A: ...' or 'B: ...', and nothing else.")}]


def judge_messages(record: Record) -> list[dict[str, str]]:
    dialogue = "\n".join(f"{turn.speaker}: {turn.text}" for turn in record.turns)
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": (
                f"Dialogue:\n{dialogue}\n\nWhich emotion does speaker {record.turns[0].speaker} "
                f"feel: {', '.join(EMOTIONS)}? Answer with one of these words only.")}]


_TURN = re.compile(r"^[\s*_#>-]*(?:speaker\s+)?([A-Za-z][\w.' -]{0,24}?)[\s*_]*:[\s*_]*(.+)$",
                   re.IGNORECASE)


def parse_dialogue(text: str) -> list[Turn]:
    """``Speaker: text`` lines (markdown bold and "Speaker A" tolerated); other lines ignored."""
    turns = []
    for line in text.splitlines():
        match = _TURN.match(line.strip())
        if match and match.group(2).strip(' "*'):
            turns.append(Turn(match.group(1).strip(), match.group(2).strip(' "*')))
    return turns


_LABEL_WORD = re.compile(r"[a-z]+")


def parse_label(answer: str) -> str | None:
    """The emotion a judge answered, or None (abstain) for no emotion or several different ones.

    The whole answer is tried first ("Joy." -> happiness), then every word in it
    ("The emotion is anger" -> anger; "anger or fear" -> None).
    """
    whole = answer.strip().strip(".!\"'*` ").lower()
    if whole in EMOTIONS or whole in ALIASES:
        return normalize_emotion(whole)
    found = {normalize_emotion(word) for word in _LABEL_WORD.findall(answer.lower())
             if word in EMOTIONS or word in ALIASES}
    return found.pop() if len(found) == 1 else None


# --- one item ------------------------------------------------------------------------------


def _record(item: Item, turns: list[Turn], config: GenerateConfig,
            meta: dict[str, Any]) -> Record:
    return Record(id=item.record_id, emotion=item.emotion, turns=tuple(turns),
                  source=f"generate:{config.model}", meta=meta)


def _run_item(item: Item, config: GenerateConfig, models: dict[str, ChatModel]) -> dict[str, Any]:
    """Write, check and judge one item; the journal entry (raises ChatFailure on failure)."""
    seed = item.seed(config.seed)
    turns_wanted = random.Random(seed).randint(config.min_turns, config.max_turns)
    entry: dict[str, Any] = {"topic": item.topic, "emotion": item.emotion, "index": item.index,
                             "writer": config.model, "judges": list(config.judge_models)}
    text = models[config.model].complete(writer_messages(item, turns_wanted),
                                         max_tokens=config.writer_max_tokens,
                                         temperature=config.temperature, seed=seed)
    turns = parse_dialogue(text)
    if len(turns) < 2 or len({turn.speaker for turn in turns}) < 2:
        return {**entry, "status": "unparsable", "raw": text[:2000]}
    record = _record(item, turns, config, {"topic": item.topic})
    entry["turns"] = [dataclasses.asdict(turn) for turn in turns]
    entry["names_emotion"] = names_emotion(record)
    if entry["names_emotion"] and config.on_naming == "discard":
        return {**entry, "status": "names_emotion"}
    votes = {}
    for judge in config.judge_models:
        answer = models[judge].complete(judge_messages(record), temperature=0.0, seed=seed,
                                        max_tokens=config.judge_max_tokens)
        votes[judge] = parse_label(answer)
    entry["votes"] = votes
    agreeing = sum(label == item.emotion for label in votes.values())
    entry["status"] = "kept" if 2 * agreeing > len(votes) else "judges_disagree"
    return entry


# --- the journal ---------------------------------------------------------------------------


def paths(out: str | Path) -> tuple[Path, Path, Path]:
    """(records, journal, agreement sidecar) for an output path."""
    target = Path(out)
    stem = target.with_suffix("") if target.suffix == ".jsonl" else target
    return target, Path(f"{stem}.items.jsonl"), Path(f"{stem}.agreement.json")


def read_journal(path: Path, config: GenerateConfig) -> list[dict[str, Any]]:
    """The journal's entries; cuts a torn last line off the file so appends stay clean."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        with path.open("r+b") as handle:  # the last write was cut short: drop its fragment
            handle.truncate(len(complete))
    entries = []
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            key = (entry["topic"], entry["emotion"], entry["index"])
        except (json.JSONDecodeError, TypeError, KeyError):
            raise UserError(f"{path}:{number}: not a generate journal entry; delete the file "
                            "(or choose another --out) to start afresh") from None
        if (entry.get("writer"), entry.get("judges")) != (config.model,
                                                          list(config.judge_models)):
            raise UserError(f"{path}:{number}: written with writer {entry.get('writer')!r} and "
                            f"judges {entry.get('judges')}, not this run's {config.model!r} and "
                            f"{list(config.judge_models)}; use the same models or another --out")
        entry["key"] = key
        entries.append(entry)
    return entries


def _kept_records(entries: list[dict[str, Any]], config: GenerateConfig) -> list[Record]:
    records = []
    for entry in sorted(entries, key=lambda entry: entry["key"]):
        if entry["status"] != "kept":
            continue
        item = Item(entry["topic"], entry["emotion"], entry["index"])
        meta = {"topic": item.topic, "votes": entry["votes"]}
        if entry.get("names_emotion"):
            meta["names_emotion"] = True
        records.append(_record(item, [Turn(**turn) for turn in entry["turns"]], config, meta))
    return records


# --- agreement -----------------------------------------------------------------------------


def fleiss_kappa(ratings: list[list[str]]) -> float | None:
    """Fleiss' kappa of items each rated by the same number (>= 2) of raters.

    None when it is undefined: no items, fewer than two raters, or every rating in one
    category (chance agreement 1).
    """
    if not ratings:
        return None
    raters = len(ratings[0])
    if raters < 2 or any(len(row) != raters for row in ratings):
        return None
    counts = [Counter(row) for row in ratings]
    observed = sum((sum(c * c for c in row.values()) - raters) / (raters * (raters - 1))
                   for row in counts) / len(ratings)
    totals: Counter[str] = Counter()
    for row in counts:
        totals.update(row)
    chance = sum((total / (len(ratings) * raters)) ** 2 for total in totals.values())
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def judge_agreement(entries: list[dict[str, Any]], config: GenerateConfig,
              failed: int) -> dict[str, Any]:
    judged = [entry for entry in entries if "votes" in entry]
    per_judge = {}
    for judge in config.judge_models:
        labels = [(entry["votes"][judge], entry["emotion"]) for entry in judged]
        correct = sum(label == emotion for label, emotion in labels)
        per_judge[judge] = {"judged": len(labels),
                            "abstained": sum(label is None for label, _ in labels),
                            "accuracy": round(correct / len(labels), 4) if labels else None}
    # Kappa needs a label from every judge: items with an abstention are left out.
    complete = [list(entry["votes"].values()) for entry in judged
                if None not in entry["votes"].values()]
    kappa = fleiss_kappa(complete)
    statuses = Counter(entry["status"] for entry in entries)
    per_emotion = {emotion: {"items": sum(e["emotion"] == emotion for e in entries),
                             "kept": sum(e["emotion"] == emotion and e["status"] == "kept"
                                         for e in entries)}
                   for emotion in config.emotions}
    return {"writer": config.model, "judges": list(config.judge_models),
            "items": len(entries), "kept": statuses["kept"],
            "discarded": {status: statuses[status]
                          for status in ("judges_disagree", "names_emotion", "unparsable")},
            "flagged_names_emotion": sum(bool(e.get("names_emotion")) and e["status"] == "kept"
                                         for e in entries),
            "failed_this_run": failed,
            "per_judge": per_judge,
            "fleiss_kappa": None if kappa is None else round(kappa, 4),
            "kappa_items": len(complete),
            "per_emotion": per_emotion}


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateSummary:
    done_before: int
    done_now: int
    kept: int
    records: Path
    journal: Path
    sidecar: Path


def _bounded(executor: ThreadPoolExecutor, todo: list[Item], limit: int, config: GenerateConfig,
             models: dict[str, ChatModel]) -> Iterator[tuple[Item, Future[dict[str, Any]]]]:
    """Finished futures as they complete, keeping at most ``limit`` in flight (so an interrupt
    leaves little half-done work and the journal fills in roughly the items' order)."""
    pending: dict[Future[dict[str, Any]], Item] = {}
    queue = iter(todo)
    while True:
        for item in queue:
            pending[executor.submit(_run_item, item, config, models)] = item
            if len(pending) >= limit:
                break
        if not pending:
            return
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            yield pending.pop(future), future


def generate(config: GenerateConfig, out: str | Path, progress: bool = True,
             models: dict[str, ChatModel] | None = None) -> GenerateSummary:
    """Run (or resume) the recipe into ``out``; see the module docstring for the files.

    Items whose requests still fail after every retry are left out of the journal, so the
    next run retries them; they are counted, and a :class:`UserError` says so at the end.
    """
    config.check()
    records_path, journal_path, sidecar_path = paths(out)
    entries = read_journal(journal_path, config)
    done = {entry["key"] for entry in entries}
    todo = [item for item in items(config) if item.key not in done]
    if models is None:
        models = open_chat_models([config.model, *config.judge_models], config.endpoint,
                                  os.environ.get(config.api_key_env),
                                  RetryPolicy(config.timeout, config.max_retries,
                                                      config.backoff))
    failures: list[str] = []
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    with journal_path.open("a", encoding="utf-8") as journal, \
            ThreadPoolExecutor(max_workers=config.concurrency) as executor, \
            tqdm(total=len(todo), desc="generate", disable=not progress) as bar:
        try:
            for item, future in _bounded(executor, todo, 2 * config.concurrency, config, models):
                try:
                    entry = future.result()
                except ChatFailure as error:
                    failures.append(f"{item.record_id}: {error}")
                else:
                    journal.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    journal.flush()
                    entry["key"] = item.key
                    entries.append(entry)
                bar.update()
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise
    kept = _kept_records(entries, config)
    write_records(records_path, kept)
    write_json(sidecar_path, judge_agreement(entries, config, len(failures)))
    if failures:
        raise UserError(f"{len(failures)} of {len(todo)} items failed after "
                        f"{config.max_retries} retries (first: {failures[0]}); the finished "
                        f"ones are in {journal_path}: run the same command again to retry")
    return GenerateSummary(len(done), len(todo), len(kept), records_path, journal_path,
                           sidecar_path)
