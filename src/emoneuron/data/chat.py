"""Chat models that write and judge dialogues: an OpenAI-compatible endpoint or a local model.

The HTTP client uses only the standard library (urllib), opens no connection before the first
request, and retries what is worth retrying: 429 and 5xx answers, connection errors, timeouts
and unreadable answers, with exponential backoff and jitter, waiting what a ``Retry-After``
header asks instead when there is one. Any other 4xx (a bad key, an unknown model) will not get
better by retrying: it raises :class:`UserError` at once.

Local models are loaded by :func:`emoneuron.models.load` (imported only when one is used, so the
HTTP path never imports torch) and generate through their chat template; one lock per model
makes concurrent callers take turns.

Secrets never leave :class:`HttpChat`: the API key and the endpoint's user-info
(``user:password@``) are cut from every message it raises and every answer it returns, so no
error line, journal or sidecar file shows them, even when a server echoes the key back.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from emoneuron.errors import UserError

if TYPE_CHECKING:
    from emoneuron.models.loading import LoadedModel

Messages = list[dict[str, str]]
LOCAL_PREFIX = "local:"
HIDDEN = "***"
_USER_INFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without URL user-info and without any of ``secrets`` (each becomes ``***``).

    >>> redact("http://me:pw@host/v1: HTTP 401 (bad key sk-123)", ["sk-123"])
    'http://***@host/v1: HTTP 401 (bad key ***)'
    """
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return _USER_INFO.sub(f"{HIDDEN}@", text)


def endpoint_secrets(endpoint: str) -> list[str]:
    """The parts of an endpoint (a URL, or a mistyped one without its scheme) that must not be
    shown: its user-info and the password in it.

    >>> endpoint_secrets("https://me:pw@host/v1"), endpoint_secrets("me:pw@host:80")
    (['me:pw', 'pw'], ['me:pw', 'pw'])
    """
    authority = endpoint.split("://", 1)[-1].split("/", 1)[0]
    user_info = authority.rpartition("@")[0]
    return [user_info, user_info.partition(":")[2]]


class ChatFailure(Exception):
    """A request that still failed after every retry (the endpoint may work again later)."""


class ChatModel(Protocol):
    name: str

    def complete(self, messages: Messages, *, max_tokens: int, temperature: float,
                 seed: int) -> str: ...


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0  # first wait; doubles each retry
    max_wait_s: float = 60.0  # cap on any single wait, Retry-After included


def _retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, float(when) - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class HttpChat:
    """One model name at an OpenAI-compatible endpoint (``.../v1`` or ``.../chat/completions``)."""

    endpoint: str
    name: str
    api_key: str | None = field(default=None, repr=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    _jitter: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def _redact(self, text: str) -> str:
        return redact(text, [self.api_key, *endpoint_secrets(self.endpoint)])

    def _backoff(self, attempt: int) -> float:
        # Half fixed, half random ("equal jitter"): waits still grow, but clients that failed
        # together do not all come back at the same instant.
        delay = min(self.retry.max_wait_s, self.retry.backoff_s * 2.0 ** attempt)
        return delay / 2 + self._jitter.uniform(0, delay / 2)

    def complete(self, messages: Messages, *, max_tokens: int, temperature: float,
                 seed: int) -> str:
        payload = {"model": self.name, "messages": messages, "max_tokens": max_tokens,
                   "temperature": temperature, "seed": seed}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = json.dumps(payload).encode("utf-8")
        for attempt in range(self.retry.max_retries + 1):
            asked: float | None = None
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers,
                                                 method="POST")
                with urllib.request.urlopen(request, timeout=self.retry.timeout_s) as response:
                    return self._redact(_content(json.loads(response.read())))
            except urllib.error.HTTPError as error:
                if error.code != 429 and error.code < 500:
                    detail = error.read().decode("utf-8", "replace").strip().splitlines()
                    raise UserError(self._redact(
                        f"{self.url}: HTTP {error.code} for model {self.name!r} "
                        f"({(detail or [''])[0][:200]}); check the endpoint, the model name "
                        "and the API key variable")) from None
                reason = f"HTTP {error.code}"
                asked = _retry_after(error.headers.get("Retry-After"))
            except (urllib.error.URLError, http.client.HTTPException, OSError,
                    ValueError, KeyError, IndexError, TypeError) as error:
                # Connection refused/reset, timeouts (TimeoutError is an OSError), bodies that
                # are not the JSON an OpenAI-compatible server sends.
                reason = f"{error.__class__.__name__}: {error}"
            if attempt == self.retry.max_retries:
                raise ChatFailure(self._redact(f"{self.url} ({self.name}): {reason}, "
                                               f"{attempt + 1} attempts"))
            wait = asked if asked is not None else self._backoff(attempt)
            self.sleep(min(wait, self.retry.max_wait_s))
        raise AssertionError("unreachable: the loop returns or raises")


def _content(answer: Any) -> str:
    content = answer["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}, not text")
    return content


@dataclass
class LocalChat:
    """A model loaded by :func:`emoneuron.models.load`, generating through its chat template."""

    loaded: LoadedModel
    name: str
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def complete(self, messages: Messages, *, max_tokens: int, temperature: float,
                 seed: int) -> str:
        import torch

        tokenizer = self.loaded.tokenizer
        if getattr(tokenizer, "chat_template", None):
            prompt = str(tokenizer.apply_chat_template(messages, tokenize=False,
                                                       add_generation_prompt=True))
        else:  # a base model: the same conversation as plain text
            prompt = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n"
                             for m in messages) + "Assistant:"
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.loaded.device)
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature}
                                    if temperature > 0 else {"do_sample": False})
        with self._lock, torch.no_grad():
            torch.manual_seed(seed)  # under the lock: the seed belongs to this request only
            output = self.loaded.model.generate(  # type: ignore[operator]
                **inputs, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id,
                **sampling)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return str(tokenizer.decode(new_tokens, skip_special_tokens=True))


def open_chat_models(specs: list[str], endpoint: str | None, api_key: str | None,
                     retry: RetryPolicy, device: str = "cpu") -> dict[str, ChatModel]:
    """One chat model per distinct spec: ``local:NAME`` or, without an endpoint, any name, is
    loaded locally; with an endpoint, a name is that endpoint's model."""
    models: dict[str, ChatModel] = {}
    for spec in dict.fromkeys(specs):
        local = spec.startswith(LOCAL_PREFIX) or endpoint is None
        name = spec.removeprefix(LOCAL_PREFIX)
        if local:
            from emoneuron.models.loading import load

            models[spec] = LocalChat(load(name, device=device), name)
        else:
            assert endpoint is not None
            if not endpoint.startswith(("http://", "https://")):
                shown = redact(endpoint, endpoint_secrets(endpoint))
                raise UserError(f"endpoint {shown!r} is not an http(s) URL; pass e.g. "
                                "--endpoint http://127.0.0.1:8000/v1")
            models[spec] = HttpChat(endpoint, name, api_key, retry)
    return models
