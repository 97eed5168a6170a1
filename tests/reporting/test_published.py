"""The documents' generated figures are their captured runs' (emoneuron.reporting.published)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emoneuron.errors import UserError
from emoneuron.io import write_json
from emoneuron.layout import SET_LEVEL
from emoneuron.reporting.published import (
    CAPTURED,
    DOCUMENTS,
    SUMMARY,
    blocks,
    capture,
    main,
    refreshed,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_generated_block_is_its_captured_runs(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert refreshed(text, ROOT / CAPTURED) == text, (
        f"{document}: a generated block differs from its runs; run make docs-results")


def test_the_published_documents_cite_runs() -> None:
    cited = [spec for document in DOCUMENTS
             for spec, _ in blocks((ROOT / document).read_text(encoding="utf-8"))]
    assert any(spec.startswith("verdicts ") for spec in cited)
    assert any(spec.startswith("per-emotion ") for spec in cited)


def test_a_changed_figure_in_the_run_changes_the_block(
        finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = finished_run
    captured = capture("tiny", run, tmp_path)
    text = "before\n<!-- generated: per-emotion tiny -->\nstale\n<!-- end generated -->\nafter\n"
    fresh = refreshed(text, tmp_path)
    assert fresh.startswith("before\n") and fresh.endswith("after\n") and "stale" not in fresh
    assert refreshed(fresh, tmp_path) == fresh
    table = pd.read_csv(captured / SET_LEVEL)
    row = table.index[(table.statistic == "own") & (table.scope == "all")][0]
    emotion = table.loc[row, "masked_emotion"]
    line = next(line for line in fresh.splitlines() if f"| {emotion} |" in line)
    table.loc[row, ["excess", "ci_low", "ci_high"]] = [0.5, 0.25, 0.75]
    table.to_csv(captured / SET_LEVEL, index=False)
    changed = refreshed(fresh, tmp_path)
    assert changed != fresh and "+50.0 [+25.0, +75.0]" in changed
    assert line not in changed.splitlines()


def test_verdicts_list_only_sets_beyond_random_sets(
        finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = finished_run
    captured = capture("tiny", run, tmp_path)
    table = pd.read_csv(captured / SET_LEVEL)
    table["beyond"] = False
    first = table.index[(table.statistic == "own") & (table.scope == "last")][0]
    table.loc[first, ["beyond", "excess", "ci_low", "ci_high"]] = [True, 0.4, 0.1, 0.7]
    table.to_csv(captured / SET_LEVEL, index=False)
    body = refreshed("<!-- generated: verdicts tiny -->\n<!-- end generated -->", tmp_path)
    row = body.splitlines()[3]
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    assert cells == ["none", "none", f"{table.loc[first, 'masked_emotion']} +40.0 [+10.0, "
                     "+70.0]", "none"]


def test_a_block_naming_no_captured_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no captured run 'missing'"):
        refreshed("<!-- generated: per-emotion missing -->\n<!-- end generated -->",
                  tmp_path)
    with pytest.raises(UserError, match="give one of verdicts"):
        refreshed("<!-- generated: table demo -->\n<!-- end generated -->", tmp_path)


@pytest.mark.parametrize("kind", ["verdicts", "per-emotion", "replication"])
def test_every_kind_refuses_a_run_without_a_set_level_test(kind: str, tmp_path: Path) -> None:
    """replication once skipped such a run silently, so its table cited seeds it did not show."""
    old = tmp_path / "old"
    old.mkdir()
    write_json(old / SUMMARY, {"model": "tiny-lm", "preset": "", "seed": 0, "counts": {},
                               "emoneuron_version": "0"})
    with pytest.raises(UserError) as refused:
        refreshed(f"<!-- generated: {kind} old -->\n<!-- end generated -->", tmp_path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{old}: no {SET_LEVEL}")
    assert "make docs-results RESULTS=old=RUN_DIR" in message


def test_main_refuses_a_run_without_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--run", "runs/demo"]) == 2
    assert capsys.readouterr().err.startswith("error: --run runs/demo: give NAME=RUN_DIR")


def test_capture_replaces_a_stale_capture(finished_run: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    run, _ = finished_run
    stale = tmp_path / "tiny" / "old.csv"
    stale.parent.mkdir()
    stale.write_text("x\n")
    captured = capture("tiny", run, tmp_path)
    assert not stale.exists() and (captured / SET_LEVEL).exists()
