"""A small scripted OpenAI-compatible ``/v1/chat/completions`` server for the generate tests.

It is a real HTTP server on 127.0.0.1 (http.server in a thread). The writer model returns a
dialogue for the topic and emotion named in its prompt; each judge model answers by a fixed
rule (see JUDGES). Faults are scripted per (topic, emotion): the first writer requests for that
pair get the listed answers ("429" with Retry-After: 1, "500", "503", "slow").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Lexicon-free lines that carry each emotion; the judges recognise a dialogue by its first line.
CUES = {
    "anger": ("He took my parking spot again and laughed at me.", "How dare he, after last time?"),
    "disgust": ("There were maggots crawling in the bin by the sink.", "Put it outside, now."),
    "fear": ("Someone has been trying our door handle all night.", "Call the police right away."),
    "happiness": ("We won the final and the whole team hugged me!", "You earned every bit."),
    "sadness": ("Her chair is still empty at every dinner since the funeral.", "I miss her too."),
    "surprise": ("My quiet neighbour turned out to be a famous drummer!", "Since when? No way!"),
}
NAMING = {"anger": "furious", "disgust": "disgusted", "fear": "terrified",
          "happiness": "happy", "sadness": "sad", "surprise": "surprised"}

# judge -> emotion -> answer text; any other judge or emotion: the intended label.
JUDGES: dict[str, dict[str, str]] = {
    "judge-a": {"anger": "Anger.", "happiness": "**Joy**"},
    "judge-b": {"sadness": "The emotion is sadness.", "surprise": "fear"},
    "judge-c": {"anger": "disgust", "happiness": "I cannot tell.", "sadness": "I cannot tell.",
                "surprise": "Hard to say, sorry."},
}

_WRITER_PROMPT = re.compile(r"about (.+?)\. Speaker A feels (\w+)\.")


@dataclass
class Script:
    faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    always_failing: set[str] = field(default_factory=set)  # topics answered 503 forever
    delay_s: float = 0.0
    required_key: str | None = None
    echo_key: bool = False  # a 401 body repeats the key it was given, as some servers do
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def writer_requests(self, topic: str, emotion: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests
                    if r["kind"] == "writer" and (r["topic"], r["emotion"]) == (topic, emotion)]


def _writer_text(topic: str, emotion: str) -> str:
    if topic == "garbled":
        return "Sorry, I cannot help with that request."
    first, second = CUES[emotion]
    if topic == "named":
        first = f"I am so {NAMING[emotion]}. {first}"
    return f"Here is the dialogue:\nA: {first}\n**B:** {second}\nA: It was about {topic}."


def _judge_text(model: str, dialogue: str) -> str:
    emotion = next(e for e, (first, _) in CUES.items() if first in dialogue)
    return JUDGES.get(model, {}).get(emotion, emotion)  # other models answer right


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # the name http.server dispatches POST to
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            prompt = payload["messages"][-1]["content"]
            match = _WRITER_PROMPT.search(prompt)
            request = {"model": payload["model"], "time": time.monotonic(),
                       "kind": "writer" if match else "judge",
                       "topic": match.group(1) if match else None,
                       "emotion": match.group(2) if match else None}
            with script.lock:
                script.requests.append(request)
                queue = script.faults.get((request["topic"], request["emotion"]), [])
                fault = queue.pop(0) if match and queue else None
            time.sleep(script.delay_s)
            if script.required_key and \
                    self.headers.get("Authorization") != f"Bearer {script.required_key}":
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                echoed = f": {given}" if script.echo_key else ""
                self._send(401, {"error": {"message": f"Incorrect API key provided{echoed}"}})
                return
            if fault == "429":
                self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
            elif fault in ("500", "503") or request["topic"] in script.always_failing:
                self._send(int(fault or 503), {"error": {"message": "server trouble"}})
            else:
                if fault == "slow":
                    time.sleep(1.5)  # longer than the client's timeout
                text = (_writer_text(request["topic"], request["emotion"]) if match
                        else _judge_text(payload["model"], prompt))
                self._send(200, {"id": "x", "object": "chat.completion",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})

    return Handler


@contextmanager
def serve(script: Script) -> Iterator[str]:
    """Run the server for ``script``; yields its base URL (``http://127.0.0.1:PORT/v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
