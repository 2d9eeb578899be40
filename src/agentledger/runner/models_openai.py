"""`OpenAIChatModel`: a `Model` for any OpenAI-compatible Chat Completions endpoint.

It speaks to OpenAI, OpenRouter, Ollama, vLLM, LM Studio or a llama.cpp server through the
official `openai` package (`pip install 'agentledger[openai]'`): tools, parallel tool calls,
streaming, token usage, and the client's retries with backoff. Every failure becomes a
`ModelError` whose `kind` says what went wrong. The API key is handed to the client and
nothing else: it is never printed, logged, or put into an error message or an event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentledger.errors import MissingDependencyError, ModelError
from agentledger.runner.models import Message, ModelResponse, ToolCall, Usage

__all__ = ["OpenAIChatModel", "to_openai_messages"]


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise MissingDependencyError("openai", "openai") from exc
    return openai


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Return `messages` as the dicts the Chat Completions API takes.

    An assistant message's tool calls keep their ids; arguments are sent as JSON text
    (the model's own text when it was not valid JSON, so the history is what it wrote).
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content or ""})
        elif m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {
                                "name": c.name,
                                "arguments": c.invalid_arguments
                                if c.invalid_arguments is not None
                                else json.dumps(c.arguments, ensure_ascii=False),
                            },
                        }
                        for c in m.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": m.role, "content": m.content or ""})
    return out


def _tool_call(index: int, call_id: str | None, name: str | None, arguments: str | None) -> ToolCall:
    text = arguments or ""
    try:
        decoded = json.loads(text) if text.strip() else {}
    except ValueError:
        decoded = None
    return ToolCall(
        id=call_id or f"call_{index}",
        name=name or "",
        arguments=decoded if isinstance(decoded, dict) else {},
        invalid_arguments=None if isinstance(decoded, dict) else text,
    )


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(
        input_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
    )


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Stream:
    """Assembles streamed chunks (text and tool-call deltas split across chunks)."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage | None = None

    def add(self, chunk: Any) -> str:
        self.model = getattr(chunk, "model", None) or self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = _usage(chunk.usage)
        delta_text = ""
        for choice in getattr(chunk, "choices", None) or []:
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                delta_text += delta.content
            for part in delta.tool_calls or []:
                index = part.index if part.index is not None else len(self.calls)
                call = self.calls.setdefault(index, _PartialCall())
                call.id = part.id or call.id
                if part.function is not None:
                    call.name += part.function.name or ""
                    call.arguments.append(part.function.arguments or "")
        if delta_text:
            self.text.append(delta_text)
        return delta_text

    def response(self, provider: str) -> ModelResponse:
        calls = [
            _tool_call(i, c.id, c.name, "".join(c.arguments))
            for i, c in sorted(self.calls.items())
        ]
        return ModelResponse(
            text="".join(self.text) or None,
            tool_calls=calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
            model=self.model,
            provider=provider,
        )


class OpenAIChatModel:
    """A model served by an OpenAI-compatible Chat Completions endpoint.

    Args:
        model: The model's name at the endpoint (`gpt-4o-mini`, `meta-llama/llama-3.1-8b-instruct`).
        api_key: The key sent as a bearer token; `None` for endpoints without keys (Ollama).
            It is never printed, logged or stored.
        base_url: The endpoint, e.g. `https://openrouter.ai/api/v1`; `None`: OpenAI's.
        provider: Recorded on events (`openai`, `openrouter`, `ollama`...).
        api_key_env: The variable the key came from, named in authentication errors.
        timeout: Seconds to wait for a response (each try).
        max_retries: Tries after the first on 408/409/429/5xx and connection errors, with
            the client's exponential backoff (it honours `Retry-After`).
        stream_usage: Ask for token usage on streamed responses (`stream_options`); turn
            off for a server that refuses the option.
        default_headers: Extra HTTP headers for every request.

    Raises:
        MissingDependencyError: The `openai` package is not installed.

    Every method raises `ModelError` with a `kind`: `auth` (401/403), `rate_limited`
    (429), `server` (5xx), `timeout`, `connection`, `bad_request` (another 4xx) or
    `bad_response` (no choices, or a body that cannot be read).
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        provider: str = "openai",
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        stream_usage: bool = True,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self._openai = _import_openai()
        self.name = model
        self.provider = provider
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.stream_usage = stream_usage
        # Keyless endpoints (Ollama, a local vLLM) still need a non-empty key for the client.
        self._key = api_key or "unused"
        self._headers = dict(default_headers or {})
        self._client = self._openai.OpenAI(**self._client_options())
        self._async: tuple[asyncio.AbstractEventLoop, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"OpenAIChatModel({self.name!r}, provider={self.provider!r}, "
            f"base_url={self.base_url!r})"
        )

    def _client_options(self) -> dict[str, Any]:
        return {
            "api_key": self._key,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "default_headers": self._headers or None,
        }

    def _async_client(self) -> Any:
        # The async client's connections belong to one event loop: one client per loop.
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, self._openai.AsyncOpenAI(**self._client_options()))
        return self._async[1]

    def _request(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]], *, stream: bool
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.name, "messages": to_openai_messages(messages)}
        if tools:
            request["tools"] = [dict(t) for t in tools]
        if stream:
            request["stream"] = True
            if self.stream_usage:
                request["stream_options"] = {"include_usage": True}
        return request

    # -- errors ------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if len(self._key) >= 4 else text

    def _error(self, exc: Exception) -> ModelError:
        o = self._openai
        where = f"{self.provider} model {self.name!r}"
        if isinstance(exc, ModelError):
            return exc
        if isinstance(exc, o.APITimeoutError):
            return ModelError(f"{where}: no response within {self.timeout:g}s", kind="timeout")
        if isinstance(exc, o.APIConnectionError):
            return ModelError(
                f"{where}: cannot reach {self.base_url or 'the endpoint'}: {self._scrub(str(exc))}",
                kind="connection",
            )
        if isinstance(exc, o.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                # The provider's message may quote (part of) the key: leave it out.
                hint = f"; check ${self.api_key_env}" if self.api_key_env else ""
                return ModelError(
                    f"{where}: the endpoint refused the API key (HTTP {status}){hint}", kind="auth"
                )
            detail = self._scrub(_status_detail(exc))
            if status == 429:
                return ModelError(
                    f"{where}: rate limited (HTTP 429) after {self.max_retries} retries: {detail}",
                    kind="rate_limited",
                )
            if status >= 500:
                return ModelError(
                    f"{where}: server error (HTTP {status}) after {self.max_retries} retries: "
                    f"{detail}",
                    kind="server",
                )
            return ModelError(f"{where}: request refused (HTTP {status}): {detail}", kind="bad_request")
        if isinstance(exc, (o.APIResponseValidationError, ValueError, TypeError, AttributeError)):
            return ModelError(
                f"{where}: unreadable response: {self._scrub(str(exc))}", kind="bad_response"
            )
        return ModelError(f"{where} failed: {self._scrub(str(exc))}", kind="model")

    # -- responses ---------------------------------------------------------------------

    def _response(self, completion: Any) -> ModelResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelError(
                f"{self.provider} model {self.name!r}: the response has no choices",
                kind="bad_response",
            )
        choice = choices[0]
        message = choice.message
        calls = [
            _tool_call(i, c.id, c.function.name, c.function.arguments)
            for i, c in enumerate(message.tool_calls or [])
        ]
        return ModelResponse(
            text=message.content or None,
            tool_calls=calls,
            usage=_usage(getattr(completion, "usage", None)),
            finish_reason=choice.finish_reason,
            model=getattr(completion, "model", None),
            provider=self.provider,
        )

    def generate(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> ModelResponse:
        """Call the endpoint once (the client retries transient failures) and return its answer.

        Raises:
            ModelError: The call failed; `kind` says how (see the class docstring).
        """
        try:
            completion = self._client.chat.completions.create(
                **self._request(messages, tools, stream=False)
            )
            return self._response(completion)
        except Exception as exc:
            raise self._error(exc) from None

    async def generate_async(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> ModelResponse:
        """The async twin of `generate`."""
        try:
            completion = await self._async_client().chat.completions.create(
                **self._request(messages, tools, stream=False)
            )
            return self._response(completion)
        except Exception as exc:
            raise self._error(exc) from None

    def generate_stream(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> Iterator[str | ModelResponse]:
        """Stream the answer: yield text deltas as they arrive, then the complete response
        (tool calls assembled from their deltas, usage when the server reports it).

        Raises:
            ModelError: The call failed, before or during the stream.
        """
        assembled = _Stream()
        try:
            stream = self._client.chat.completions.create(
                **self._request(messages, tools, stream=True)
            )
        except Exception as exc:
            raise self._error(exc) from None
        try:
            while True:
                try:
                    chunk = next(stream)
                except StopIteration:
                    break
                except Exception as exc:
                    raise self._error(exc) from None
                text = assembled.add(chunk)
                if text:
                    yield text
        finally:
            stream.close()
        yield assembled.response(self.provider)

    async def generate_stream_async(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]]
    ) -> AsyncIterator[str | ModelResponse]:
        """The async twin of `generate_stream`."""
        assembled = _Stream()
        try:
            stream = await self._async_client().chat.completions.create(
                **self._request(messages, tools, stream=True)
            )
        except Exception as exc:
            raise self._error(exc) from None
        try:
            iterator = stream.__aiter__()
            while True:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise self._error(exc) from None
                text = assembled.add(chunk)
                if text:
                    yield text
        finally:
            await stream.close()
        yield assembled.response(self.provider)


def _status_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(exc, "message", "") or exc)
