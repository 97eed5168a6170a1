"""Turn a record into model text, remembering which characters belong to the dialogue itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from emoneuron.data.schema import Record


@dataclass(frozen=True)
class RenderedDialogue:
    text: str
    # Character spans of the turns' own words: speaker tags and line breaks are scaffolding.
    spans: tuple[tuple[int, int], ...]


def render_dialogue(record: Record) -> RenderedDialogue:
    """``Speaker: text`` lines, one per turn."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for turn in record.turns:
        tag = f"{turn.speaker}: "
        start = cursor + len(tag)
        parts.append(f"{tag}{turn.text}\n")
        spans.append((start, start + len(turn.text)))
        cursor += len(parts[-1])
    return RenderedDialogue(text="".join(parts).rstrip("\n"), spans=tuple(spans))


def tokens_in_spans(offsets: Sequence[tuple[int, int]],
                    spans: Sequence[tuple[int, int]]) -> list[bool]:
    """For each token's character ``(start, end)``, whether it overlaps one of ``spans``: the
    dialogue's own words, as the recorder counts them and the ``dialogue`` scope edits them."""
    return [end > start and any(s < end and start < e for s, e in spans)
            for start, end in offsets]
