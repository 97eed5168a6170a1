"""`data generate` against a real scripted HTTP server on 127.0.0.1, and with SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from openai_server import CUES, Script, serve

from emoneuron.cli import main
from emoneuron.data.chat import HttpChat, RetryPolicy
from emoneuron.data.generate import (
    GenerateConfig,
    fleiss_kappa,
    generate,
    parse_dialogue,
    parse_label,
    paths,
)
from emoneuron.data.lexicon import names_emotion
from emoneuron.data.schema import EMOTIONS, read_records
from emoneuron.errors import UserError

FAST = {"timeout": 0.5, "max_retries": 3, "backoff": 0.05, "concurrency": 4}


def _journal(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fleiss_kappa_matches_hand_computed_examples() -> None:
    # 3 items, 2 raters: (a,a) (a,b) (b,b). P_i = 1, 0, 1 -> mean 2/3; p_a = p_b = 1/2 ->
    # chance 1/2; kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    assert fleiss_kappa([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(1 / 3)
    # Fleiss (1971) as tabulated on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [[str(c) for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert fleiss_kappa([["a", "a"], ["a", "a"]]) is None  # all one category: undefined
    assert fleiss_kappa([["a"], ["b"]]) is None
    assert fleiss_kappa([]) is None


def test_judge_answers_are_normalised_or_abstain() -> None:
    assert parse_label("Anger.") == "anger"
    assert parse_label(" **Joy**\n") == "happiness"
    assert parse_label("The emotion is sadness.") == "sadness"
    assert parse_label("scared, clearly scared") == "fear"
    assert parse_label("anger or fear") is None
    assert parse_label("I cannot tell.") is None
    assert parse_label("") is None


def test_writer_output_parsing_ignores_chatter_and_markdown() -> None:
    turns = parse_dialogue("Sure! Here it is:\n\n**A:** Hi there.\nSpeaker B: \"Hello.\"\n"
                           "Note: keep it short\n- A: Bye.\nB:\n")
    assert [(t.speaker, t.text) for t in turns] == [
        ("A", "Hi there."), ("B", "Hello."), ("Note", "keep it short"), ("A", "Bye.")]


def test_generate_against_the_scripted_server(tmp_path: Path) -> None:
    script = Script(faults={("exams", "anger"): ["429"], ("weather", "fear"): ["500", "500"],
                            ("traffic", "sadness"): ["slow"]})
    topics = ("exams", "weather", "traffic", "named", "garbled")
    with serve(script) as url:
        config = GenerateConfig(model="writer-1", judges=("judge-a", "judge-b", "judge-c"),
                                endpoint=url, topics=topics, **FAST)
        summary = generate(config, tmp_path / "gen.jsonl", progress=False)
    records_path, journal_path, sidecar_path = paths(tmp_path / "gen.jsonl")
    assert (summary.done_before, summary.done_now, summary.kept) == (0, 30, 15)

    # Retries: the 429's Retry-After (1 s) was waited; two 500s and a timeout were retried.
    first, second = script.writer_requests("exams", "anger")
    assert second["time"] - first["time"] >= 1.0
    assert len(script.writer_requests("weather", "fear")) == 3
    assert len(script.writer_requests("traffic", "sadness")) == 2

    entries = _journal(journal_path)
    assert len(entries) == 30
    assert len({(e["topic"], e["emotion"], e["index"]) for e in entries}) == 30
    status = Counter((e["topic"], e["status"]) for e in entries)
    assert status[("named", "names_emotion")] == 6  # the lexicon caught every one
    assert status[("garbled", "unparsable")] == 6
    for topic in ("exams", "weather", "traffic"):
        # Three judges, kept by strict majority: surprise has only judge-a right.
        assert status[(topic, "kept")] == 5 and status[(topic, "judges_disagree")] == 1

    records = read_records(records_path)
    assert len(records) == 15 and not any(map(names_emotion, records))
    assert {r.emotion for r in records} == set(EMOTIONS) - {"surprise"}
    assert all(r.turns[0].text == CUES[r.emotion][0] for r in records)
    assert records[0].id == "gen-anger-exams-000" and records[0].source == "generate:writer-1"

    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["per_judge"] == {
        "judge-a": {"judged": 18, "abstained": 0, "accuracy": 1.0},
        "judge-b": {"judged": 18, "abstained": 0, "accuracy": round(15 / 18, 4)},
        "judge-c": {"judged": 18, "abstained": 9, "accuracy": round(6 / 18, 4)}}
    # Items without abstentions: anger (a, b anger; c disgust), disgust, fear, 3 topics each.
    # P_i = 1/3 for anger rows, 1 otherwise -> 7/9; p = (6, 12, 9)/27 -> chance 29/81;
    # kappa = (7/9 - 29/81) / (52/81) = 34/52.
    assert sidecar["kappa_items"] == 9
    assert sidecar["fleiss_kappa"] == round(34 / 52, 4)
    assert sidecar["discarded"] == {"judges_disagree": 3, "names_emotion": 6, "unparsable": 6}
    assert (sidecar["items"], sidecar["kept"], sidecar["failed_this_run"]) == (30, 15, 0)


def test_failed_items_are_reported_and_retried_by_the_next_run(tmp_path: Path) -> None:
    script = Script(always_failing={"outage"})
    with serve(script) as url:
        config = GenerateConfig(model="writer-1", endpoint=url, topics=("outage", "exams"),
                                emotions=("fear",), **FAST)
        with pytest.raises(UserError, match=r"1 of 2 items failed .* HTTP 503.* run the same"):
            generate(config, tmp_path / "gen.jsonl", progress=False)
        assert len(script.writer_requests("outage", "fear")) == 4  # 1 + 3 retries
        _, journal_path, sidecar_path = paths(tmp_path / "gen.jsonl")
        assert [e["topic"] for e in _journal(journal_path)] == ["exams"]
        assert json.loads(sidecar_path.read_text())["failed_this_run"] == 1
        script.always_failing.clear()
        summary = generate(config, tmp_path / "gen.jsonl", progress=False)
    assert (summary.done_before, summary.done_now) == (1, 1)
    assert len(script.writer_requests("exams", "fear")) == 1  # not asked again


def test_api_key_comes_from_the_named_variable_and_401_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    script = Script(required_key="sekrit")
    with serve(script) as url:
        argv = ["data", "generate", "--endpoint", url, "--model", "writer-1", "--topics",
                "exams", "--emotions", "fear", "--api-key-env", "EMONEURON_TEST_KEY",
                "--out", str(tmp_path / "gen.jsonl"), "--quiet"]
        monkeypatch.delenv("EMONEURON_TEST_KEY", raising=False)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "HTTP 401" in err and "Incorrect API key" in err
        assert len(script.requests) == 1  # a 401 is not retried
        monkeypatch.setenv("EMONEURON_TEST_KEY", "sekrit")
        assert main(argv) == 0
        assert "1 items done now (0 before); 1 dialogues kept" in capsys.readouterr().out


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="emotion 'joy': use the canonical name 'happiness'"):
        generate(GenerateConfig(emotions=("joy",)), tmp_path / "g.jsonl")
    with pytest.raises(UserError, match="topics must be distinct"):
        generate(GenerateConfig(topics=("a b", "a-b")), tmp_path / "g.jsonl")
    with pytest.raises(UserError, match="not an http"):
        generate(GenerateConfig(endpoint="127.0.0.1:80"), tmp_path / "g.jsonl")
    _, journal, _ = paths(tmp_path / "g.jsonl")
    journal.write_text('{"topic": "x", "emotion": "fear", "index": 0, "writer": "other", '
                       '"judges": ["other"], "status": "kept"}\n')
    with pytest.raises(UserError, match=r"g\.items\.jsonl:1: written with writer 'other'"):
        generate(GenerateConfig(model="w", endpoint="http://127.0.0.1:9"), tmp_path / "g.jsonl")


def test_retry_after_as_http_date_and_exhausted_retries() -> None:
    from emoneuron.data.chat import ChatFailure

    waits: list[float] = []
    # Nothing listens on port 9 of 127.0.0.1: every attempt is a refused connection.
    client = HttpChat("http://127.0.0.1:9/v1", "m", retry=RetryPolicy(0.5, 2, 1.0),
                      sleep=waits.append)
    with pytest.raises(ChatFailure, match="3 attempts"):
        client.complete([{"role": "user", "content": "hi"}], max_tokens=1, temperature=0,
                        seed=0)
    # Exponential backoff with jitter: in [d/2, d] for d = 1, 2.
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


def test_kill_and_resume_leaves_no_duplicates(tmp_path: Path) -> None:
    script = Script(delay_s=0.05)
    topics = tuple(f"topic {n}" for n in range(10))
    out = tmp_path / "gen.jsonl"
    _, journal_path, _ = paths(out)
    with serve(script) as url:
        config = GenerateConfig(model="writer-1", judges=("judge-a",), endpoint=url,
                                topics=topics, emotions=("anger", "fear"), **FAST)
        code = (f"from emoneuron.data.generate import GenerateConfig, generate\n"
                f"generate(GenerateConfig(**{json.dumps(config.__dict__)}), {str(out)!r}, "
                f"progress=False)\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = subprocess.Popen([sys.executable, "-c", code], env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                not journal_path.exists() or journal_path.read_text().count("\n") < 4):
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = _journal(journal_path)
        assert 4 <= len(before) < 20
        with journal_path.open("a") as journal:  # a write torn by the kill
            journal.write('{"topic": "topic 9", "emoti')
        summary = generate(config, out, progress=False)
    after = _journal(journal_path)
    keys = [(e["topic"], e["emotion"], e["index"]) for e in after]
    assert len(keys) == len(set(keys)) == 20
    assert after[:len(before)] == before  # append-only
    assert (summary.done_before, summary.done_now) == (len(before), 20 - len(before))
    for entry in before:  # finished items were never written again
        assert len(script.writer_requests(entry["topic"], entry["emotion"])) == 1
    assert len(read_records(out)) == 20


def test_smollm2_writes_and_judges_a_few_items(tmp_path: Path) -> None:
    # Greedy and few tokens: two items cost about 20 s on an idle 2-core CPU. Greedy output is
    # deterministic; for (pets, sadness) it is three "A: (laughs)"-style turns, so the judge
    # path runs. The point is the mechanics and the sidecar, not SmolLM2's judgment.
    config = GenerateConfig(model="smollm2-135m", topics=("pets",),
                            emotions=("sadness", "anger"), min_turns=2, max_turns=2,
                            temperature=0.0, writer_max_tokens=16, judge_max_tokens=1,
                            on_naming="flag", concurrency=2)
    summary = generate(config, tmp_path / "gen.jsonl", progress=False)
    _, journal_path, sidecar_path = paths(tmp_path / "gen.jsonl")
    entries = {e["emotion"]: e for e in _journal(journal_path)}
    assert summary.done_now == len(entries) == 2
    sadness = entries["sadness"]
    assert sadness["status"] in ("kept", "judges_disagree") and len(sadness["turns"]) >= 2
    assert set(sadness["votes"]) == {"smollm2-135m"}
    assert sadness["votes"]["smollm2-135m"] in (*EMOTIONS, None)
    sidecar = json.loads(sidecar_path.read_text())
    judged = [e for e in entries.values() if "votes" in e]
    assert sidecar["per_judge"]["smollm2-135m"]["judged"] == len(judged) >= 1
    assert sidecar["items"] == 2 and sidecar["kept"] == summary.kept
    assert sidecar["fleiss_kappa"] is None  # one judge: kappa is undefined


def test_secrets_are_never_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A password in the endpoint URL and an API key a server echoes in its 401 body are
    replaced by *** in the error line; nothing of them reaches a file either."""
    script = Script(required_key="right-key", echo_key=True)
    monkeypatch.setenv("EMONEURON_TEST_KEY", "wrong-key-1234")
    out = tmp_path / "gen.jsonl"
    with serve(script) as url:
        with_password = url.replace("http://", "http://alice:hunter2pass@")
        for endpoint in (url, with_password, with_password.removeprefix("http://")):
            argv = ["data", "generate", "--endpoint", endpoint, "--model", "writer-1",
                    "--topics", "exams", "--emotions", "fear", "--api-key-env",
                    "EMONEURON_TEST_KEY", "--max-retries", "0", "--out", str(out), "--quiet"]
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("error: ")
            for secret in ("wrong-key-1234", "hunter2pass", "alice:"):
                assert secret not in err
            assert "***" in err
    assert script.requests and script.requests[0]["kind"] == "writer"  # the key was sent
    for path in tmp_path.rglob("*"):
        assert b"wrong-key-1234" not in path.read_bytes()
        assert b"hunter2pass" not in path.read_bytes()


def test_an_answer_that_echoes_the_key_is_stored_without_it(tmp_path: Path) -> None:
    from emoneuron.data.chat import HttpChat

    with serve(Script()) as url:
        chat = HttpChat(url, "writer-1", api_key="Here")  # a key the writer's answer contains
        answer = chat.complete([{"role": "user", "content": "about exams. Speaker A feels "
                                 "fear."}], max_tokens=10, temperature=0.0, seed=0)
    assert answer.startswith("*** is the dialogue:") and "Here" not in answer
    assert "Here" not in repr(chat)
