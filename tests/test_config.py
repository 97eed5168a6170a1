"""The nested configuration: every option documented, one flag per field, choices equal to
their registries, presets and selection methods overridden by explicit options."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import pytest

from emoneuron.causal.config import Design, FixedStyle, Mode, PromptStyle, Scope, VariantsConfig
from emoneuron.cli import main
from emoneuron.config import PRESETS, PresetName, RunConfig, preset_config
from emoneuron.data.generate import GenerateConfig
from emoneuron.errors import UserError
from emoneuron.executors import ExecutorConfig, ExecutorName
from emoneuron.models.config import SITES
from emoneuron.options import field_docs, flag, leaf_fields
from emoneuron.recording.config import RecordConfig, TokenPolicy
from emoneuron.selection.config import (
    SELECTION_METHODS,
    Control,
    IdentifyConfig,
    SelectionName,
    StabilityConfig,
)

CONFIGS = (RunConfig, RecordConfig, IdentifyConfig, StabilityConfig, Design, VariantsConfig,
           ExecutorConfig, GenerateConfig)


@pytest.mark.parametrize("cls", CONFIGS, ids=[c.__name__ for c in CONFIGS])
def test_every_field_has_its_args_line(cls: type[Any]) -> None:
    import dataclasses

    docs = field_docs(cls)
    assert [f.name for f in dataclasses.fields(cls)] == list(docs)
    assert all(len(text) > 10 for text in docs.values()), docs


def test_no_two_fields_of_a_run_map_to_one_flag() -> None:
    flags = Counter(flag(spec.name) for _, spec in leaf_fields(RunConfig))
    assert [f for f, n in flags.items() if n > 1] == []
    assert {"--rule", "--top-n", "--site", "--token-policy", "--mode", "--shards"} <= set(flags)


def test_each_registry_is_keyed_by_its_literal() -> None:
    from emoneuron.causal.evaluation.classifier import PROMPT_STYLES
    from emoneuron.causal.evaluation.intervene import REPLACEMENTS
    from emoneuron.models.adapters import ADAPTERS
    from emoneuron.recording.statistics import TOKEN_POLICIES
    from emoneuron.selection.controls import CONTROLS

    assert tuple(REPLACEMENTS) == get_args(Mode)
    assert PROMPT_STYLES == get_args(PromptStyle) == ("auto", *get_args(FixedStyle))
    assert get_args(TokenPolicy) == TOKEN_POLICIES
    assert get_args(Control) == CONTROLS
    assert tuple(SELECTION_METHODS) == get_args(SelectionName)
    assert ("", *PRESETS) == get_args(PresetName)
    assert get_args(Scope) == ("all", "dialogue", "last")
    assert get_args(ExecutorName) == ("local", "ray")
    for adapter in ADAPTERS:
        assert tuple(adapter.sites) == SITES, adapter.family


def _parsed_run(*options: str) -> RunConfig:
    seen: list[RunConfig] = []
    import emoneuron.app.run

    original = emoneuron.app.run.run
    emoneuron.app.run.run = lambda config, *_, **__: seen.append(config)  # type: ignore[assignment,misc,return-value]
    try:
        assert main(["run", "--out", "unused", *options]) == 0
    finally:
        emoneuron.app.run.run = original
    return seen[0]


def test_every_stage_option_reaches_the_run_config() -> None:
    config = _parsed_run("--rule", "per-emotion", "--top-n", "40", "--site", "mlp.activation",
                         "--assignment", "argmax", "--token-policy", "last", "--mode", "scale",
                         "--strength", "0.5", "--executor", "ray", "--shards", "3",
                         "--preset", "demo")
    assert (config.identify.rule, config.identify.top_n, config.identify.assignment,
            config.identify.statistic) == ("per-emotion", 40, "argmax", "lape")
    assert (config.record.site, config.record.token_policy) == ("mlp.activation", "last")
    assert (config.design.mode, config.design.strength, config.design.proportions) == (
        "scale", 0.5, (0.5, 1.0))
    assert (config.execution.shards, config.preset, config.per_emotion) == (3, "demo", 50)
    assert config.selection_method().label == (
        "LAPE (Tang et al. 2024), with assignment argmax, rule per-emotion, top_n 40")


def test_equal_size_is_asked_for_and_no_preset_turns_it_on() -> None:
    assert not RunConfig().equal_size
    assert not any(preset_config(name).equal_size for name in PRESETS)
    config = _parsed_run("--preset", "demo", "--equal-size")
    assert config.equal_size and config.compare_methods == ("lape", "attribution")
    assert not _parsed_run("--equal-size", "--no-equal-size").equal_size


def test_the_demo_tests_directions_against_random_ones_at_every_position_only() -> None:
    """The demo's direction stage took 1,970 s of 67 minutes with both nulls at three scopes;
    the study keeps them all, and the command line can ask for any."""
    demo, study = preset_config("demo").design, preset_config("study").design
    assert (demo.direction_nulls, demo.direction_scopes) == (("random",), ("all",))
    assert (study.direction_nulls, study.direction_scopes) == (
        ("random", "shuffled"), ("all", "dialogue", "last"))
    asked = _parsed_run("--preset", "demo", "--direction-nulls", "shuffled",
                        "--direction-scopes", "dialogue", "last").design
    assert (asked.direction_nulls, asked.direction_scopes) == (("shuffled",),
                                                               ("dialogue", "last"))
    for nulls, message in ((("random", "random"), "each value once"),
                           (("shufled",), "did you mean shuffled")):
        with pytest.raises(UserError, match=message):
            preset_config("demo", direction_nulls=nulls)
    with pytest.raises(UserError, match="--direction-scopes: give one or more of all"):
        Design(direction_scopes=())


def test_the_local_executor_given_drops_the_ray_settings_of_a_config_file(
        tmp_path: Path) -> None:
    settings = tmp_path / "run.toml"
    settings.write_text('[execution]\nexecutor = "ray"\nworkers = 4\nshards = 8\n')
    assert _parsed_run("--config", str(settings)).execution.workers == 4
    local = _parsed_run("--config", str(settings), "--executor", "local").execution
    assert (local.executor, local.workers, local.shards) == ("local", 0, 0)


def test_the_best_prompt_choice_given_drops_the_fixed_prompt_of_a_config_file(
        tmp_path: Path) -> None:
    settings = tmp_path / "run.toml"
    settings.write_text('prompt_choice = "fixed"\nprompt = "chat"\ncalibrate = false\n')
    assert _parsed_run("--config", str(settings)).prompt == "chat"
    best = _parsed_run("--config", str(settings), "--prompt-choice", "best")
    assert (best.prompt_choice, best.prompt, best.calibrate) == ("best", "auto", True)


@pytest.mark.parametrize(("options", "given"), [({"prompt": "plain"}, "--prompt plain"),
                                                ({"calibrate": False}, "--no-calibrate")])
def test_a_fixed_prompt_setting_with_the_best_prompt_choice_is_refused(
        options: dict[str, Any], given: str) -> None:
    """The best choice picks the style and calibration itself: a given one was ignored."""
    assert RunConfig(prompt_choice="fixed", **options).prompt_choice == "fixed"
    assert RunConfig(prompt="auto", calibrate=True).prompt_choice == "best"  # the defaults
    with pytest.raises(UserError) as raised:
        RunConfig(**options)
    assert str(raised.value) == (
        f"{given}: applies only to --prompt-choice fixed (--prompt-choice best picks the prompt "
        f"style and calibration itself and would ignore it); add --prompt-choice fixed, or "
        f"drop {given}")


def test_a_selection_method_fills_what_is_not_given() -> None:
    config = preset_config(selection="entropy-argmax", statistic="auroc", controls=("random",))
    assert (config.record.site, config.identify.statistic, config.identify.assignment) == (
        "mlp.down_proj.input", "auroc", "argmax")
    assert RunConfig() == preset_config()


def test_per_emotion_rule_alone_assigns_by_argmax_and_lape_given_names_the_fix(
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _parsed_run("--rule", "per-emotion", "--top-n", "40", "--site", "mlp.activation")
    assert (config.identify.rule, config.identify.assignment) == ("per-emotion", "argmax")
    assert config.selection_method().label.endswith("with assignment argmax, rule per-emotion, "
                                                    "top_n 40")
    assert main(["run", "--out", "unused", "--rule", "per-emotion", "--assignment", "lape"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "use --assignment argmax" in error, error


@pytest.mark.parametrize(("command", "named"), [
    (["record", "--data", "x.jsonl", "--out", "s.safetensors", "--batch-size", "0"],
     "--batch-size 0"),
    (["record", "--data", "x.jsonl", "--out", "s.safetensors", "--token-policy", "first"],
     "--token-policy 'first'"),
    (["identify", "s.safetensors", "--out", "n.json", "--top-n", "0"], "--top-n 0"),
    (["identify", "s.safetensors", "--out", "n.json", "--resamples", "1"], "--resamples 1"),
    (["evaluate", "--shots", "-1"], "--shots -1"),
    (["evaluate", "--prompts", "fancy"], "--prompts fancy"),
    (["run", "--out", "r", "--controls", "frequency"], "always include random"),
    (["run", "--out", "r", "--compare-methods", "auroc", "auroc"], "--compare-methods"),
    (["run", "--out", "r", "--selection", "attribution"], "--compare-methods attribution"),
    (["run", "--out", "r", "--selection", "direction-projection"],
     "--compare-methods direction-projection"),
    (["run", "--out", "r", "--statistic", "direction-projection"], "it reads the directions"),
    (["run", "--out", "r", "--preset", "size", "--equal-size"],  # size compares no method
     "--equal-size: it cuts the compared methods' sets to one size"),
    (["run", "--out", "r", "--workers", "-1"], "--workers -1"),
    (["run", "--out", "r", "--steer-judges", "--no-probe"], "give --probe, or --no-steer"),
    (["run", "--out", "r", "--steer-null-draws", "1"], "give 0 (no verdict) or at least 2"),
    (["run", "--out", "r", "--steer-null-draws", "-2"], "--steer-null-draws -2"),
    # Ray-only options the local executor would silently ignore
    (["run", "--out", "r", "--workers", "2"], "--workers 2: applies only to --executor ray"),
    (["run", "--out", "r", "--ray-address", "auto"], "--ray-address auto: applies only to"),
    (["record", "--data", "x.jsonl", "--out", "s.safetensors", "--shards", "3"],
     "add --executor ray, or drop --shards"),
    (["record", "--data", "x.jsonl", "--out", "s.safetensors", "--group-seed", "-1"],
     "--group-seed -1: a seed"),
    (["identify", "s.safetensors", "--out", "n.json", "--seed", "-1"], "--seed -1: a seed"),
    (["evaluate", "--seed", "-1"], "--seed -1: a seed"),
])
def test_stage_options_are_checked_before_any_work(
        command: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(command) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and named in error, error


@pytest.mark.parametrize(("config", "field", "value", "type_name"), [
    (IdentifyConfig, "share", "0.1", "float"),
    (IdentifyConfig, "top_n", 2.5, "int"),
    (IdentifyConfig, "top_n", True, "int"),
    (IdentifyConfig, "activity_quantile", None, "float"),
    (Design, "control_seeds", [0, 1], "tuple"),
    (Design, "proportions", (0.5, "1"), "tuple"),
    (RecordConfig, "batch_size", 1.5, "int"),
    (ExecutorConfig, "gpus_per_worker", "1", "float | None"),
    (StabilityConfig, "seed", 0.5, "int"),
])
def test_a_config_field_of_the_wrong_type_is_a_type_error_naming_it(
        config: type[Any], field: str, value: Any, type_name: str) -> None:
    """In Python: ``IdentifyConfig(share="0.1")`` once failed inside a comparison with a bare
    TypeError, and a bool or a float passed for a count went through."""
    with pytest.raises(TypeError) as raised:
        config(**{field: value})
    assert str(raised.value).startswith(f"{config.__name__}: {field}={value!r} is not of type "
                                        f"{type_name}"), raised.value


def test_help_shows_what_an_option_does_its_choices_and_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--mode {zero,mean,scale,amplify,clamp} how the neurons are changed" in text
    assert "(default: zero)" in text and "(default: lape (from --selection lape))" in text


def _imports(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent).stdout.strip()


def test_the_parser_and_the_data_commands_import_no_torch(tmp_path: Path) -> None:
    assert _imports("import sys; from emoneuron.cli import build_parser; build_parser(); "
                    "print('torch' in sys.modules, 'transformers' in sys.modules)") == (
        "False False")
    data = tmp_path / "d.jsonl"
    main(["data", "synth", "--per-emotion", "2", "--out", str(data)])
    assert _imports(f"import sys; from emoneuron.cli import main; main(['data', 'stats', "
                    f"{str(data)!r}]); print('torch' in sys.modules, "
                    "'transformers' in sys.modules)").splitlines()[-1] == "False False"
