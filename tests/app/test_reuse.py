"""The one stage-reuse helper (emoneuron.app.reuse.reused) on a real run directory: a stage
computed once is read back while its inputs and files are unchanged, and computed again when
either changes or when it wrote nothing."""

from __future__ import annotations

from pathlib import Path

from emoneuron.app.reuse import reused
from emoneuron.io import content_hash
from emoneuron.rundir import RunDir


def test_a_stage_is_computed_once_then_read_back_until_its_inputs_or_files_change(
        tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path, verify=False)
    computed: list[str] = []

    def compute(text: str) -> tuple[str, list[str]]:
        computed.append(text)
        run_dir.file("out.txt").write_text(text)
        return text, ["out.txt"]

    def stage(inputs: list[object], text: str) -> str:
        return reused(run_dir, "stage", content_hash(inputs), run_dir.file("out.txt").read_text,
                      lambda: compute(text))

    assert stage(["v1", 1], "first") == "first"
    assert stage(["v1", 1], "second") == "first"  # same inputs: read back, not computed
    assert stage(["v1", 2], "third") == "third"  # other inputs
    run_dir.file("out.txt").write_text("edited")
    assert stage(["v1", 2], "fourth") == "fourth"  # a file changed since
    assert computed == ["first", "third", "fourth"]


def test_a_stage_that_wrote_nothing_runs_again(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path, verify=False)
    calls = []

    def compute() -> tuple[None, list[str]]:
        calls.append(1)
        return None, []

    for _ in range(2):
        reused(run_dir, "empty", content_hash(["same"]), lambda: None, compute)
    assert len(calls) == 2
