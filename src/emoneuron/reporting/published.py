"""The figures README.md and docs/ publish, generated from the runs they describe.

1. ``make docs-results`` (``python -m emoneuron.reporting.published --run demo=runs/demo
   --run study-smollm2-s0=runs/study ...``) copies each named run's small tables and a
   summary of its manifest into ``docs/captured/NAME/``
   (:func:`emoneuron.reporting.captured.capture`), then rewrites every generated block of the
   documents (:func:`refresh`).
2. A generated block is the text between ``<!-- generated: KIND RUN [RUN ...] -->`` and
   ``<!-- end generated -->``; its body is :data:`KINDS`\\ [KIND] rendered from those captured
   runs, so a document cannot say what its run does not: the verdicts here, what the run was
   and did in :mod:`emoneuron.reporting.run_facts`.
3. ``tests/reporting/test_published.py`` renders every block again from ``docs/captured`` and fails
   on any difference.

Paths are relative to the repository root (the working directory of ``make docs-results``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import rewrite
from emoneuron.layout import FORMATS_SET_LEVEL
from emoneuron.reporting import run_facts
from emoneuron.reporting.captured import CAPTURED, capture, captured_table, set_level, summary
from emoneuron.reporting.html import pp
from emoneuron.selection.config import SELECTION_METHODS

DOCUMENTS = ("README.md", "docs/results.md", "docs/tutorial.md")
BLOCK = re.compile(r"(<!-- generated: ([^>]*?) -->\n)(.*?)(<!-- end generated -->)", re.S)
SCOPES = {"all": "removed at every position", "dialogue": "on the dialogue's tokens only",
          "last": "at the scored position only"}


def interval(row: Any) -> str:
    """A set-level excess in points with its interval.

    >>> interval(pd.Series({"excess": 0.62, "ci_low": 0.26, "ci_high": 0.99}))
    '+62.0 [+26.0, +99.0]'
    """
    return f"{pp(row.excess)} [{pp(row.ci_low)}, {pp(row.ci_high)}]"


def _label(method: str) -> str:
    return SELECTION_METHODS[method].label if method in SELECTION_METHODS else method


def _beyond(rows: pd.DataFrame) -> str:
    found = rows[rows.beyond.astype(str) == "True"]
    return ", ".join(f"{row.masked_emotion} {interval(row)}"
                     for row in found.itertuples()) or "none"


def verdicts(names: Sequence[str], into: Path = CAPTURED) -> str:
    """Per method, the emotions whose set is beyond random sets (Holm) at each scope and for
    the label-free probe, with the excess and its interval: the README's demo table."""
    (name,) = names
    columns = [*SCOPES.values(), "label-free probe after the set"]
    lines = []
    for method, rows in set_level(name, into).groupby("method", sort=False):
        own = [rows[(rows.scope == scope) & (rows.statistic == "own")] for scope in SCOPES]
        lines.append([_label(str(method)),
                      *[_beyond(part) for part in [*own, rows[rows.statistic == "probe"]]]])
    return run_facts.markdown_table(["method", *columns], lines)


def per_emotion(names: Sequence[str], into: Path = CAPTURED) -> str:
    """Per run (model, seed), method and emotion: the set's excess over random sets [95%
    interval] at each scope, under the other answer format and for the probe, bold where the
    Holm-adjusted test finds it beyond random sets, and what the set does."""
    header = ["model", "seed", "method", "emotion", "neurons", *SCOPES, "other format",
              "probe", "dialogue vs answer"]
    lines = []
    for name in names:
        run = summary(name, into)
        tested = set_level(name, into)
        formats = captured_table(name, FORMATS_SET_LEVEL, into)
        for method, rows in tested.groupby("method", sort=False):
            for emotion in EMOTIONS:
                mine = rows[rows.masked_emotion == emotion]
                if mine.empty:
                    continue
                own = mine[mine.statistic == "own"]
                cells = [_cell(own[own.scope == scope]) for scope in SCOPES]
                other = (formats[(formats.method == method)
                                 & (formats.masked_emotion == emotion)]
                         if formats is not None else None)
                reading = own[own.scope == "all"].reading.fillna("")
                lines.append([
                    run["model"], str(run["seed"]), str(method), emotion,
                    str(int(own.n_neurons.iloc[0])), *cells,
                    _cell(other, prefix=True) if other is not None else "-",
                    _cell(mine[mine.statistic == "probe"]),
                    str(reading.iloc[0]) if len(reading) else ""])
    return run_facts.markdown_table(header, lines)


def _cell(rows: pd.DataFrame | None, prefix: bool = False) -> str:
    if rows is None or rows.empty:
        return "-"
    row = rows.iloc[0]
    text = interval(row)
    if str(row.beyond) == "True":
        text = f"**{text}**"
    return f"{row.answer_format}: {text}" if prefix else text


def replication(names: Sequence[str], into: Path = CAPTURED) -> str:
    """Per model, method, scope and emotion: in how many of the runs (seeds) the set is
    beyond random sets (Holm), of how many tested."""
    found: dict[tuple[str, str, str, str], list[bool]] = {}
    for name in names:
        model = summary(name, into)["model"]
        tested = set_level(name, into)
        own = tested[tested.statistic.isin(["own", "probe"])]
        for row in own.itertuples():
            scope = "probe" if row.statistic == "probe" else str(row.scope)
            found.setdefault((model, str(row.method), scope, str(row.masked_emotion)),
                             []).append(str(row.beyond) == "True")
    header = ["model", "method", "scope", *EMOTIONS]
    lines = []
    keys = sorted({key[:3] for key in found}, key=lambda k: (k[0], k[1], _scope_order(k[2])))
    for model, method, scope in keys:
        cells = []
        for emotion in EMOTIONS:
            seen = found.get((model, method, scope, emotion), [])
            cells.append(f"{sum(seen)}/{len(seen)}" if seen else "-")
        lines.append([model, method, scope, *cells])
    return run_facts.markdown_table(header, lines)


def _scope_order(scope: str) -> int:
    order = [*SCOPES, "probe"]
    return order.index(scope) if scope in order else len(order)


def runs_table(names: Sequence[str], into: Path = CAPTURED) -> str:
    """What each cited run is: model, preset, seed, dialogues per split, the version that
    wrote it (run times: BENCHMARKS.md)."""
    lines = ["| run | model | preset | seed | identification / held-out per emotion | "
             "emoneuron |", "|---|---|---|---:|---|---|"]
    for name in names:
        run = summary(name, into)
        counts = run["counts"]
        sizes = f"{min(counts['identify'].values())} / {min(counts['eval'].values())}"
        lines.append(f"| {name} | {run['model']} | {run['preset']} | "
                     f"{run['seed']} | {sizes} | {run['emoneuron_version']} |")
    return "\n".join(lines) + "\n"


KINDS: dict[str, Callable[[Sequence[str], Path], str]] = {
    "verdicts": verdicts, "per-emotion": per_emotion, "replication": replication,
    "runs": runs_table, "settings": run_facts.settings, "timings": run_facts.timings,
    "conditions": run_facts.conditions, "baselines": run_facts.baselines,
    "set-sizes": run_facts.set_sizes, "prompts": run_facts.prompts, "power": run_facts.power}


def block(spec: str, into: Path = CAPTURED) -> str:
    """The body of the generated block ``spec`` ("KIND RUN [RUN ...]")."""
    kind, *names = spec.split()
    if kind not in KINDS or not names:
        raise UserError(f"generated block {spec!r}: give one of {', '.join(KINDS)} and the "
                        "captured runs it is drawn from")
    return KINDS[kind](names, into)


def rendered(text: str, render: Callable[[str], str]) -> str:
    """``text`` with every generated block's body replaced by ``render(spec)``; the marks and
    all around them kept (``emoneuron.clidocs`` renders the command pages' blocks with it).

    >>> rendered("a\\n<!-- generated: x 1 -->\\nold\\n<!-- end generated -->\\nb", str.upper)
    'a\\n<!-- generated: x 1 -->\\nX 1<!-- end generated -->\\nb'
    """
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)


def refreshed(text: str, into: Path = CAPTURED) -> str:
    """``text`` with every generated block's body rendered again."""
    return rendered(text, lambda spec: block(spec, into))


def blocks(text: str) -> list[tuple[str, str]]:
    """Each generated block of ``text`` as (spec, body)."""
    return [(m.group(2), m.group(3)) for m in BLOCK.finditer(text)]


def refresh(root: Path = Path(), into: Path = CAPTURED) -> list[Path]:
    """Rewrite every generated block of :data:`DOCUMENTS` under ``root``; the documents
    changed."""
    paths = [root / document for document in DOCUMENTS]
    return [path for path in paths
            if rewrite(path, refreshed(path.read_text(encoding="utf-8"), root / into))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emoneuron.reporting.published",
        description="capture runs into docs/captured and regenerate the documents' figures")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR",
                        help="a finished run to capture as NAME (repeatable); without any, "
                             "the documents are regenerated from what docs/captured holds")
    args = parser.parse_args(argv)
    try:
        for given in args.run:
            name, separator, directory = given.partition("=")
            if not separator or not name or not directory:
                raise UserError(f"--run {given}: give NAME=RUN_DIR, e.g. demo=runs/demo")
            print(f"captured {capture(name, Path(directory))}")
        for path in refresh():
            print(f"rewrote {path}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
