"""The model options shared by `demo`, `run`, `chat` and `replay`, and streamed printing.

`--model SPEC` (or `$AGENTLEDGER_MODEL`) picks the model: `offline` (the default: the
agent's own deterministic model, no key, no network), `openai/<model>`,
`openrouter/<model>`, `ollama/<model>`; `--base-url` points `openai/<model>` at any other
OpenAI-compatible endpoint and `--api-key-env` names the variable holding its key. The
spec is resolved (and a missing key reported) before the store is opened, so a bad
choice writes nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentledger.cli.app import dotenv_loaded
from agentledger.cli.render import print_answer
from agentledger.core.events import Event
from agentledger.errors import ConfigurationError
from agentledger.runner import Agent, OfflineModel, Runner
from agentledger.runner.model_spec import MODEL_ENV, resolve_model
from agentledger.runner.runner import TextDelta, final_output

__all__ = ["ApiKeyEnvOpt", "BaseUrlOpt", "ModelOpt", "stream_turn", "with_model"]

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        envvar=MODEL_ENV,
        metavar="SPEC",
        show_default="offline",
        help=(
            "The model: offline (no key, no network), openai/MODEL ($OPENAI_API_KEY), "
            "openrouter/MODEL ($OPENROUTER_API_KEY), ollama/MODEL (local); with --base-url, "
            "openai/MODEL for any OpenAI-compatible endpoint. Keys may also come from a "
            ".env file in the working directory."
        ),
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        metavar="URL",
        help="The model's OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM).",
    ),
]
ApiKeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key-env",
        metavar="VAR",
        help="The environment variable holding the endpoint's API key.",
    ),
]


def with_model(
    agent: Agent, spec: str | None, base_url: str | None = None, api_key_env: str | None = None
) -> Agent:
    """Return `agent` with the model chosen on the command line (`agent` itself when none).

    `offline` keeps the agent's own offline model (e.g. the reminders agent's rules).

    Raises:
        ConfigurationError: Unknown provider, bad URL, a needed key is not set, or
            `--base-url`/`--api-key-env` without `--model`.
        MissingDependencyError: The spec needs the `openai` extra.
    """
    if spec is None or not spec.strip():
        if base_url or api_key_env:
            raise ConfigurationError("--base-url and --api-key-env need --model, e.g. openai/MODEL")
        return agent
    own = agent.model if isinstance(agent.model, OfflineModel) else None
    dotenv_path = None if dotenv_loaded() else Path(".env")  # parsed once per command
    model = resolve_model(
        spec, base_url=base_url, api_key_env=api_key_env, offline=own, dotenv_path=dotenv_path
    )
    return dataclasses.replace(agent, model=model)


def stream_turn(
    runner: Runner, session_id: str, message: str, out: Console, *, label: str = "[bold cyan]agent:[/] "
) -> list[Event]:
    """Run one turn, printing the model's text as it streams, each model step on its own
    `agent:` line; return the turn's stored events.

    Raises:
        Whatever `Runner.run` raises; a line being printed is ended first.
    """
    if not callable(getattr(runner.agent.get_model(), "generate_stream", None)):
        # A model that cannot stream (the offline one) answers whole: print it wrapped.
        whole = list(runner.run(session_id, message))
        print_answer(final_output(whole), console=out)
        return whole
    events: list[Event] = []
    step: tuple[str, int] | None = None
    try:
        for item in runner.run(session_id, message, stream=True):
            if isinstance(item, TextDelta):
                if step != (item.invocation_id, item.step):
                    if step is not None:
                        out.print()
                    out.print(label, end="")
                    step = (item.invocation_id, item.step)
                out.print(item.text, end="", markup=False, highlight=False, soft_wrap=True)
            else:
                events.append(item)
    finally:
        if step is not None:
            out.print()
    if step is None:
        out.print(label, end="")
        out.print("", markup=False, highlight=False, soft_wrap=True)
    return events
