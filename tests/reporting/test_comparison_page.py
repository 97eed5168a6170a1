"""`emoneuron compare` (emoneuron.reporting.comparison_page): relative depth, distances, warnings
and bad input, on fake run directories of two models with different depths (30 and 18 layers)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import N_LAYERS, WIDTH, make_run

from emoneuron.causal.inference.units import unit_comparison
from emoneuron.cli import main
from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.reporting.comparison_page import write_comparison

SHALLOW = 18


def _make_shallow(run_dir: Path) -> None:
    """A run of an 18-layer model: the fake 30-layer run with every neuron moved to the layer at
    the same relative depth, then each fear neuron moved to the first layer."""
    make_run(run_dir, model_name="shallow-lm")
    neurons = json.loads((run_dir / "neurons.json").read_text())
    for emotion, ns in neurons["emotions"].items():
        for n in ns:
            n["layer"] = 0 if emotion == "fear" else n["layer"] * SHALLOW // N_LAYERS
    neurons["n_layers"] = SHALLOW
    (run_dir / "neurons.json").write_text(json.dumps(neurons))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["model"] |= {"n_layers": SHALLOW, "n_neurons": SHALLOW * WIDTH}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    deep, shallow = tmp_path / "deep", tmp_path / "shallow"
    make_run(deep, model_name="deep-lm")
    _make_shallow(shallow)
    return deep, shallow


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    """The two runs compared once through the command line (rendering takes seconds); the
    shallow run used other data and another setting."""
    base = tmp_path_factory.mktemp("compared")
    deep, shallow, out = base / "deep", base / "shallow", base / "cmp"
    make_run(deep, model_name="deep-lm")
    _make_shallow(shallow)
    manifest = json.loads((shallow / "manifest.json").read_text())
    manifest["data"]["hash"] = "def456"
    manifest["config"]["quantile"] = 0.01
    manifest["config"]["device"] = "cuda"  # where it ran does not change what was measured
    (shallow / "manifest.json").write_text(json.dumps(manifest))
    assert main(["compare", str(deep), str(shallow), "--out", str(out)]) == 0
    return deep, shallow, out, (out / "compare.html").read_text(encoding="utf-8")


def _quantile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """W1 as the integral of |quantile_a(u) - quantile_b(u)| over u, on a fine grid."""
    u = (np.arange(200_000) + 0.5) / 200_000
    qa, qb = (np.quantile(x, u, method="inverted_cdf") for x in (a, b))
    return float(np.mean(np.abs(qa - qb)))


def _depths(run_dir: Path, emotion: str) -> np.ndarray:
    """Each selected neuron's relative depth; emotion "all": every emotion's, pooled."""
    neurons = json.loads((run_dir / "neurons.json").read_text())
    emotions = EMOTIONS if emotion == "all" else (emotion,)
    return np.array([n["layer"] / neurons["n_layers"] for e in emotions
                     for n in neurons["emotions"][e]])


def test_compare_writes_html_csv_json_and_figures(compared: tuple[Path, Path, Path, str]
                                                  ) -> None:
    deep, shallow, out, page = compared
    frame = pd.read_csv(out / "compare.csv")
    assert len(frame) == 2 * len(EMOTIONS) and set(frame["run"]) == {"deep-lm", "shallow-lm"}
    neurons = json.loads((deep / "neurons.json").read_text())
    anger = frame[(frame["run"] == "deep-lm") & (frame["emotion"] == "anger")].iloc[0]
    assert anger["n_neurons"] == len(neurons["emotions"]["anger"])
    assert anger["share_of_neurons"] == pytest.approx(anger["n_neurons"] / (N_LAYERS * WIDTH),
                                                  rel=1e-5)
    assert anger["mean_relative_depth"] == pytest.approx(_depths(deep, "anger").mean(), abs=1e-6)
    shallow_fear = frame[(frame["run"] == "shallow-lm") & (frame["emotion"] == "fear")].iloc[0]
    assert (shallow_fear["share_bottom"], shallow_fear["mean_relative_depth"]) == (1.0, 0.0)
    assert anger["mask_drop"] == pytest.approx(0.80 - 0.35, abs=1e-6)

    summary = json.loads((out / "compare.json").read_text())
    assert summary["distance"].startswith("1-D Wasserstein")
    for row in summary["distances"]:
        expected = _quantile_distance(_depths(deep, row["emotion"]),
                                      _depths(shallow, row["emotion"]))
        assert row["wasserstein"] == pytest.approx(expected, abs=1e-3), row["emotion"]
    fear = next(r for r in summary["distances"] if r["emotion"] == "fear")
    assert fear["wasserstein"] == pytest.approx(_depths(deep, "fear").mean())  # all moved to 0

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert page.index('id="summary"') < page.index('id="figures"') < page.index('id="tables"')
    assert "most different: fear" in page
    assert "deep-lm: 30 layers, 1,920 neurons; shallow-lm: 18 layers, 1,152 neurons" in page
    for name in ("share", "depth", "drops", "sweep"):
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (out / "figures" / f"{name}.svg").read_bytes()
    assert page.count('<img src="data:image/png;base64,') == 4
    assert 'title="deep-lm, anger: ' in page  # hover values on the bars


def test_sweep_is_compared_by_relative_depth(compared: tuple[Path, Path, Path, str]) -> None:
    _, _, out, page = compared
    sweep = json.loads((out / "compare.json").read_text())["sweep"]
    middle = [r for r in sweep if r["layer_range"] == "middle"]
    assert middle and all((r["depth_from"], r["depth_to"]) == pytest.approx((1 / 3, 2 / 3))
                          for r in middle)
    # The fake sweep hurts most in the middle third; surprise rises when its neurons go.
    assert page.count("hurts most in the middle third for 5 emotions; 1 lost no accuracy") == 2


def test_different_data_or_settings_are_compared_with_a_warning(
        compared: tuple[Path, Path, Path, str]) -> None:
    _, _, out, page = compared
    warning = re.search(r'<div class="warn">(.*?)</div>', page)
    assert warning is not None
    assert "<td>data hash</td><td>abc123</td><td>def456</td>" in warning.group(1)
    assert "<td>setting quantile</td><td>0.005</td><td>0.01</td>" in warning.group(1)
    assert "device" not in warning.group(1)
    found = json.loads((out / "compare.json").read_text())["differences"]
    assert set(found) == {"data hash", "setting quantile"}
    assert page.index('class="warn"') < page.index("(a) How many")  # before any result


def _missing_effects(run: Path) -> None:
    (run / "effects.csv").unlink()


def _broken_neurons(run: Path) -> None:
    (run / "neurons.json").write_text('{"emotions": ')


def _neurons_without_layers(run: Path) -> None:
    (run / "neurons.json").write_text('{"emotions": {}}')


@pytest.mark.parametrize(("damage", "message"), [
    (_missing_effects, "{run}/effects.csv: missing; not a finished `emoneuron run` directory"),
    (_broken_neurons, "{run}/neurons.json: unreadable (Expecting value"),
    (_neurons_without_layers, "{run}: unreadable run directory (KeyError"),
])
def test_damaged_run_directory_is_a_user_error(two_runs: tuple[Path, Path], tmp_path: Path,
                                               damage: object, message: str) -> None:
    deep, shallow = two_runs
    assert callable(damage)
    damage(shallow)
    with pytest.raises(UserError, match=re.escape(message.format(run=shallow))):
        write_comparison([deep, shallow], tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "compare.html").exists()


def test_bad_arguments_are_user_errors(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    deep, _ = two_runs
    with pytest.raises(UserError, match="at least two run directories, got 1"):
        write_comparison([deep], tmp_path / "cmp")
    with pytest.raises(UserError, match="given twice"):
        write_comparison([deep, deep], tmp_path / "cmp")
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'nope'}: not a directory")):
        write_comparison([deep, tmp_path / "nope"], tmp_path / "cmp")


def test_cli_compare_error_is_one_line(two_runs: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    deep, _ = two_runs
    assert main(["compare", str(deep), "--out", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "at least two run directories" in error


def _write_units(run_dir: Path, direction_beyond: set[str]) -> pd.DataFrame:
    """The run's units.csv as the run writes it (causal.units.unit_comparison), from its
    set-level table and a direction table of the same tests, beyond its null for
    ``direction_beyond``."""
    set_level = pd.read_csv(run_dir / "setlevel.csv")
    directions = set_level.drop(columns="n_neurons").assign(
        unit="direction", null="random", n_layers=3, layers="1 2 3",
        beyond=set_level.masked_emotion.isin(direction_beyond))
    directions["verdict"] = np.where(directions.beyond, "beyond random sets",
                                     "not distinguishable from random sets")
    units = unit_comparison(set_level, directions)
    units.to_csv(run_dir / "units.csv", index=False)
    return units


def test_compare_reads_each_runs_units_and_says_which_unit_carries_each_emotion(
        two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    deep, shallow = two_runs
    units = _write_units(deep, {"fear", "sadness"})
    out = tmp_path / "cmp"
    write_comparison([deep, shallow], out)
    written = pd.read_csv(out / "compare_units.csv")
    assert set(written.run) == {"deep-lm"}  # the shallow run wrote no units.csv
    assert len(written) == len(units) and list(written.columns) == ["run", *units.columns]
    page = (out / "compare.html").read_text(encoding="utf-8")
    section = page[page.index('id="units"'):page.index('id="tables"')]
    neurons = pd.read_csv(deep / "setlevel.csv").query("scope == 'all'")
    for emotion in EMOTIONS:
        set_beyond = bool(neurons.beyond[neurons.masked_emotion == emotion].iloc[0])
        carried = [unit for unit, found in (("its neurons", set_beyond),
                                            ("its direction", emotion in {"fear", "sadness"}))
                   if found]
        text = " and ".join(carried) if carried else "neither unit"
        assert f"removing {text} lowers it beyond the random null" in section, emotion
    assert section.count("<tr>") == 1 + len(EMOTIONS)  # the header, one row per emotion


def test_compare_without_units_has_no_units_section(compared: tuple[Path, Path, Path, str]
                                                    ) -> None:
    _, _, out, page = compared
    assert 'id="units"' not in page
    assert list(pd.read_csv(out / "compare_units.csv").columns) == ["run"]
