"""Model specs: the strings that choose a model (`--model`, `$AGENTLEDGER_MODEL`,
`Agent(model="openrouter/meta-llama/llama-3.1-8b-instruct")`).

| spec | endpoint | API key |
|---|---|---|
| `offline` (the default) | none: the agent's deterministic offline model | none |
| `openai/<model>` | `$OPENAI_BASE_URL`, else `https://api.openai.com/v1` | `$OPENAI_API_KEY` |
| `openrouter/<model>` | `$OPENROUTER_BASE_URL`, else `https://openrouter.ai/api/v1` | `$OPENROUTER_API_KEY` |
| `ollama/<model>` | `$OLLAMA_BASE_URL`, else `http://localhost:11434/v1` | none |

Any other OpenAI-compatible endpoint (vLLM, LM Studio, llama.cpp server): `openai/<model>`
with `base_url=` (`--base-url`), and `api_key_env=` (`--api-key-env`) naming the variable
that holds its key. With an explicit base URL the key is optional unless `api_key_env`
is given. Variables are read from the environment, then from a `.env` file in the working
directory. Everything is checked before any request is made or anything is stored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentledger.errors import ConfigurationError
from agentledger.runner.models import Model, OfflineModel

__all__ = ["MODEL_ENV", "PROVIDERS", "ModelSpec", "Provider", "parse_model_spec", "resolve_model"]

MODEL_ENV = "AGENTLEDGER_MODEL"
"""The variable the CLI reads the model spec from when `--model` is not given."""


@dataclass(frozen=True)
class Provider:
    """Where a provider's endpoint and key come from.

    Attributes:
        key_env: The variable holding its API key.
        base_url_env: The variable that may override its endpoint.
        default_base_url: Its endpoint otherwise.
        needs_key: Whether its default endpoint needs a key.
    """

    key_env: str
    base_url_env: str
    default_base_url: str
    needs_key: bool


PROVIDERS: Mapping[str, Provider] = {
    "openai": Provider("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1", True),
    "openrouter": Provider(
        "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1", True
    ),
    "ollama": Provider("OLLAMA_API_KEY", "OLLAMA_BASE_URL", "http://localhost:11434/v1", False),
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: `provider` (`offline`, `openai`, `openrouter`, `ollama`) and the
    model's name at the provider (empty for `offline`)."""

    provider: str
    name: str

    def __str__(self) -> str:
        return self.provider if self.provider == "offline" else f"{self.provider}/{self.name}"


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse `offline` or `<provider>/<model>` (the model may contain `/`).

    Raises:
        ConfigurationError: An empty spec or model name, or an unknown provider.
    """
    text = spec.strip()
    if text.lower() == "offline":
        return ModelSpec("offline", "")
    provider, slash, name = text.partition("/")
    known = ", ".join(f"{p}/<model>" for p in PROVIDERS)
    if provider.lower() not in PROVIDERS:
        raise ConfigurationError(
            f"unknown model {spec!r}: use offline, {known} "
            "(openai/<model> with a base URL for any other OpenAI-compatible endpoint)"
        )
    if not slash or not name.strip():
        raise ConfigurationError(f"model {spec!r} names no model: use {provider.lower()}/<model>")
    return ModelSpec(provider.lower(), name.strip())


def _lookup(name: str, environ: Mapping[str, str], dotenv: Mapping[str, str | None]) -> str | None:
    value = environ.get(name) or dotenv.get(name)
    return value.strip() if value and value.strip() else None


def _dotenv(path: Path | None) -> Mapping[str, str | None]:
    if path is None or not path.is_file():
        return {}
    from dotenv import dotenv_values

    return dotenv_values(path)


def resolve_model(
    spec: str | Model | None,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    offline: Model | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = Path(".env"),
    timeout: float = 60.0,
    max_retries: int = 2,
) -> Model:
    """Turn a model spec into a `Model`.

    Args:
        spec: A spec string (see the module docstring), a `Model` (returned as is), or
            `None` (`offline`).
        base_url: The endpoint, overriding the provider's (`http://` or `https://`).
        api_key_env: The variable holding the key, instead of the provider's.
        offline: What `offline` means (e.g. an agent's rule-based model); default
            `OfflineModel()`.
        environ: Where variables are read first (default `os.environ`).
        dotenv_path: A `.env` file read for variables the environment lacks (default
            `./.env`; `None`: none).
        timeout, max_retries: For the HTTP client (seconds per try; tries after the first).

    Returns:
        The model. Nothing is sent over the network here.

    Raises:
        ConfigurationError: Unknown provider, bad base URL, or a needed key is not set.
        MissingDependencyError: The spec needs the `openai` extra, which is not installed.
    """
    if spec is not None and not isinstance(spec, str):
        return spec
    parsed = parse_model_spec(spec or "offline")
    if parsed.provider == "offline":
        if base_url or api_key_env:
            raise ConfigurationError("--base-url and --api-key-env need a model such as openai/<model>")
        return offline if offline is not None else OfflineModel()
    env = os.environ if environ is None else environ
    dotenv = _dotenv(dotenv_path)
    provider = PROVIDERS[parsed.provider]
    explicit_url = base_url or _lookup(provider.base_url_env, env, dotenv)
    url = explicit_url or provider.default_base_url
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"base URL {url!r} must start with http:// or https://")
    key_env = api_key_env or provider.key_env
    if api_key_env is not None and not api_key_env.strip():
        raise ConfigurationError("--api-key-env names no variable")
    key = _lookup(key_env, env, dotenv)
    if key is None and (api_key_env is not None or (provider.needs_key and not explicit_url)):
        raise ConfigurationError(
            f"model {str(parsed)!r} needs an API key: set {key_env} in the environment or in "
            "a .env file in the working directory"
        )
    from agentledger.runner.models_openai import OpenAIChatModel

    headers = {"X-Title": "agentledger"} if parsed.provider == "openrouter" else None
    return OpenAIChatModel(
        parsed.name,
        api_key=key,
        base_url=url,
        provider=parsed.provider,
        api_key_env=key_env,
        timeout=timeout,
        max_retries=max_retries,
        default_headers=headers,
    )
