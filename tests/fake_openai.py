"""A fake OpenAI-compatible Chat Completions server for tests, over real HTTP on loopback.

A small Starlette app served by uvicorn in a thread on 127.0.0.1 (a free port). Each test
scripts what the next requests get (`server.script(...)`): a JSON completion, an error
status, a delay, or a stream of SSE chunks in the provider's format (a plain completion
asked for as a stream is sent as chunks). Every request is
recorded (`server.requests`) with its JSON body and headers, so tests check what the
model client really sent. Nothing in the client is patched.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeOpenAI", "Recorded", "Reply", "as_chunks", "chunk", "completion", "tool_call"]


def tool_call(call_id: str, name: str, arguments: Any = None) -> dict[str, Any]:
    """A tool call as the API returns it; `arguments` may be a dict or raw text."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def completion(
    text: str | None = None,
    tool_calls: Sequence[dict[str, Any]] = (),
    *,
    usage: tuple[int, int] = (11, 7),
    model: str = "fake-model-2026",
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """A Chat Completions response body."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def chunk(
    *,
    content: str | None = None,
    tool_calls: Sequence[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = None,
    model: str = "fake-model-2026",
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a stream; `usage` alone makes the final usage chunk."""
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [],
    }
    if usage is not None:
        body["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    else:
        delta: dict[str, Any] = {}
        if content is not None:
            delta["content"] = content
        if tool_calls is not None:
            delta["tool_calls"] = list(tool_calls)
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return body


@dataclass
class Reply:
    """What the server answers to one request.

    Attributes:
        body: A JSON body (a dict) or raw text.
        status: The HTTP status.
        headers: Extra response headers (e.g. `retry-after-ms`).
        delay: Seconds to wait before answering.
        chunks: When set, answer with these as an SSE stream (then `data: [DONE]`).
    """

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: list[dict[str, Any]] | None = None

    @classmethod
    def error(cls, status: int, message: str, **headers: str) -> Reply:
        """An API error in OpenAI's shape; retries are made fast (`retry-after-ms: 1`)."""
        return cls(
            {"error": {"message": message, "type": "fake_error", "code": status}},
            status=status,
            headers={"retry-after-ms": "1", **headers},
        )


@dataclass
class Recorded:
    """A request the server received: its JSON body and headers (lower-case names)."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent."""
        return list(self.body.get("messages", []))


ReplyFor = Reply | Callable[[Recorded], Reply]


class FakeOpenAI:
    """The fake server. Use as a context manager, or `start()`/`stop()`.

    `url` is the base URL to give the client (`http://127.0.0.1:PORT/v1`). Requests are
    answered from the script in order; when it is empty, with `default` (a 500 saying the
    script ran out, unless a test sets another).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[ReplyFor] = []
        self.default: ReplyFor = Reply.error(500, "fake server: the script ran out")
        self.requests: list[Recorded] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    @property
    def url(self) -> str:
        """The base URL for the client."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: ReplyFor) -> None:
        """Answer the next requests with these, in order (after any already scripted)."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget the script and the requests received."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.default = Reply.error(500, "fake server: the script ran out")

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            reply = self._script.pop(0) if self._script else self.default
        return reply(recorded) if callable(reply) else reply

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        reply = self._next(Recorded(body, {k.lower(): v for k, v in request.headers.items()}))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        chunks = reply.chunks
        if chunks is None and body.get("stream") and reply.status == 200:
            if isinstance(reply.body, dict) and reply.body.get("choices"):
                chunks = as_chunks(reply.body)  # a plain completion, streamed as asked
        if chunks is not None:
            return StreamingResponse(
                _sse(chunks), media_type="text/event-stream", headers=reply.headers
            )
        if isinstance(reply.body, str):
            return Response(
                reply.body, status_code=reply.status, headers=reply.headers,
                media_type="application/json",
            )
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    def start(self) -> FakeOpenAI:
        """Serve on a free port of 127.0.0.1 in a daemon thread; return once it listens."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def as_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A completion body as the stream of chunks a provider would send for it: the text
    in two pieces, each tool call's arguments split in two chunks, then the usage."""
    choice = body["choices"][0]
    message = choice["message"]
    out: list[dict[str, Any]] = []
    text = message.get("content") or ""
    if text:
        half = len(text) // 2
        out += [chunk(content=text[:half]), chunk(content=text[half:])]
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        out.append(chunk(tool_calls=[{
            "index": index, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": arguments[:half]},
        }]))
        out.append(chunk(tool_calls=[{"index": index, "function": {"arguments": arguments[half:]}}]))
    out.append(chunk(finish_reason=choice["finish_reason"]))
    usage = body.get("usage")
    if usage:
        out.append(chunk(usage=(usage["prompt_tokens"], usage["completion_tokens"])))
    return out


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for body in chunks:
        yield f"data: {json.dumps(body)}\n\n".encode()
        await asyncio.sleep(0)  # each chunk is sent on its own
    yield b"data: [DONE]\n\n"
