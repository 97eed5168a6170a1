"""The documents' generated figures are their captured runs' (emoneuron.reporting.published)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import read_json, write_json
from emoneuron.layout import ABLATION, CONDITIONS, MANIFEST, SET_LEVEL
from emoneuron.reporting.captured import CAPTURED, SUMMARY, capture
from emoneuron.reporting.published import DOCUMENTS, blocks, main, refreshed

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
    # The tutorial walks through make demo: what it ran, how long, and what it started from.
    tutorial = {spec for spec, _ in blocks((ROOT / "docs/tutorial.md").read_text("utf-8"))}
    assert {f"{kind} demo" for kind in ("settings", "timings", "conditions", "baselines",
                                        "set-sizes")} <= tutorial


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


RUN_FACTS = ("settings", "timings", "conditions", "baselines", "set-sizes", "prompts", "power")


def _render(kind: str, into: Path, name: str = "tiny") -> str:
    return refreshed(f"<!-- generated: {kind} {name} -->\n<!-- end generated -->", into)


def test_the_run_facts_are_the_runs_manifest_and_tables(
        finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = finished_run
    captured = capture("tiny", run, tmp_path)
    manifest = read_json(run / MANIFEST)
    settings = _render("settings", tmp_path)
    assert "| `--share` |" not in settings  # only the options the tutorial explains
    assert "| `--control-seeds` | `0` |" in settings
    assert "| `--dose-strengths` | `0.5` |" in settings and "| `--steer` | `off` |" in settings
    assert f"Selection: {manifest['selection']['label']} at `mlp.activation`" in settings
    timings = _render("timings", tmp_path)
    for stage, seconds in manifest["timings"].items():
        if not stage.startswith("total"):
            assert f"| {stage} | {seconds:.1f} |" in timings
    assert f"| total | {manifest['timings']['total']:.1f} |" in timings
    lines = (run / CONDITIONS).read_text(encoding="utf-8").splitlines()
    assert f"| **total** | **{len(lines)}** |" in _render("conditions", tmp_path)
    baseline = pd.read_csv(captured / ABLATION).query("condition == 'baseline'")
    baselines = _render("baselines", tmp_path)
    for row in baseline.itertuples():
        flag = "near chance" if row.near_chance else ""
        assert (f"| {row.eval_emotion} | {row.n} | {100 * row.accuracy:.1f}% "
                f"[{100 * row.ci_low:.1f}%, {100 * row.ci_high:.1f}%] | {flag} |") in baselines
    assert "against chance 16.7%." in baselines
    sizes = pd.read_csv(captured / SET_LEVEL).query("statistic == 'own' and scope == 'all'")
    lape = sizes[sizes.method == "lape"].set_index("masked_emotion").n_neurons
    assert ("| lape | " + " | ".join(str(lape[e]) for e in EMOTIONS)) in _render(
        "set-sizes", tmp_path)
    assert "Chosen: " in _render("prompts", tmp_path)
    assert "found with 80% power" in _render("power", tmp_path)


def test_a_changed_run_fact_changes_its_block(finished_run: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    run, _ = finished_run
    captured = capture("tiny", run, tmp_path)
    before = _render("baselines", tmp_path)
    ablation = pd.read_csv(captured / ABLATION)
    first = ablation.index[ablation.condition == "baseline"][0]
    ablation.loc[first, ["accuracy", "ci_low", "ci_high"]] = [0.123, 0.05, 0.3]
    ablation.to_csv(captured / ABLATION, index=False)
    assert "12.3% [5.0%, 30.0%]" in _render("baselines", tmp_path) != before
    summary = read_json(captured / SUMMARY)
    summary["timings"]["record"] = 4321.0
    write_json(captured / SUMMARY, summary)
    assert "| record | 4321.0 |" in _render("timings", tmp_path)


@pytest.mark.parametrize("kind", RUN_FACTS)
def test_a_run_fact_an_older_capture_lacks_is_one_line(kind: str, tmp_path: Path) -> None:
    """docs/captured/demo was captured before capture kept the manifest's settings, timings
    and conditions and ablation.csv: its blocks say so and render again once recaptured."""
    old = tmp_path / "old"
    old.mkdir()
    write_json(old / SUMMARY, {"model": "tiny-lm", "preset": "demo", "seed": 0,
                               "counts": {}, "emoneuron_version": "0"})
    body = _render(kind, tmp_path, "old").split("-->\n")[1].split("<!--")[0]
    assert body.count("\n") == 1 and body.startswith("*Not in the captured run old (")
    assert "make docs-results RESULTS=old=RUN_DIR" in body
