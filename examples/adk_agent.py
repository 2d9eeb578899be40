"""A Google ADK agent whose session lives in agentledger, interrupted and resumed.

A real ADK `LlmAgent` with a tool, run by ADK's `Runner` on `LedgerSessionService`
(SQLite). The model is scripted (offline, no key): it calls the `get_weather` tool for the
city in the user's message, then answers with the tool's result, and mentions the cities it
saw earlier in the conversation, which it only knows from the session's stored history.

    python examples/adk_agent.py first  [DB]   # turn 1, then the process ends
    python examples/adk_agent.py resume [DB]   # a new process: turn 2 on the same session
    python examples/adk_agent.py rewind [DB]   # ADK's Runner.rewind_async: undo turn 2
    agentledger --store sqlite:///DB sessions events trip   # the ledger, readable

Needs `pip install 'agentledger[adk]'`.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from agentledger.integrations.adk import LedgerSessionService

APP, USER, SESSION = "weather_app", "ada", "trip"
FORECASTS = {"paris": "sunny, 21°C", "rome": "cloudy, 18°C"}


def get_weather(city: str, tool_context: ToolContext) -> dict[str, Any]:
    """Return the weather forecast for a city."""
    seen = list(tool_context.state.get("cities", []))
    tool_context.state["cities"] = [*seen, city]
    tool_context.state["user:last_city"] = city
    return {"city": city, "forecast": FORECASTS.get(city.lower(), "unknown")}


class ScriptedModel(BaseLlm):
    """An offline model: a tool call for the city asked about, then an answer."""

    model: str = "scripted"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1]
        parts = last.parts or []
        responses = [p.function_response for p in parts if p.function_response]
        if responses:
            result = responses[0].response or {}
            earlier = [
                c for c in _cities_asked(llm_request.contents[:-1]) if c != result.get("city")
            ]
            memory = f" Earlier you asked about {', '.join(earlier)}." if earlier else ""
            text = f"{result.get('city')}: {result.get('forecast')}.{memory}"
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))
            return
        asked = _cities_asked([last])
        city = asked[-1] if asked else "Paris"
        call = types.FunctionCall(name="get_weather", args={"city": city})
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(function_call=call)]))


def _cities_asked(contents: list[types.Content]) -> list[str]:
    found: list[str] = []
    for content in contents:
        if content.role != "user":
            continue
        for part in content.parts or []:
            for word in re.findall(r"[A-Z][a-z]+", part.text or ""):
                if word.lower() in FORECASTS and word not in found:
                    found.append(word)
    return found


def make_runner(service: LedgerSessionService) -> Runner:
    agent = LlmAgent(
        name="weather_agent",
        model=ScriptedModel(),
        instruction="Answer questions about the weather with the get_weather tool.",
        tools=[get_weather],
    )
    return Runner(agent=agent, app_name=APP, session_service=service)


async def turn(runner: Runner, text: str) -> str:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    answer = ""
    async for event in runner.run_async(user_id=USER, session_id=SESSION, new_message=message):
        if event.content and event.content.parts and event.content.parts[0].text:
            answer = event.content.parts[0].text
    return answer


async def main(step: str, db: str) -> None:
    async with LedgerSessionService(f"sqlite:///{db}") as service:
        runner = make_runner(service)
        if step == "first":
            await service.create_session(app_name=APP, user_id=USER, session_id=SESSION)
            print("agent:", await turn(runner, "What is the weather in Paris?"))
            print("(process ends here; run `resume` to continue in a new process)")
        elif step == "resume":
            session = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
            if session is None:
                raise SystemExit("no session yet: run `first`")
            print(f"resumed: {len(session.events)} events, state {session.state}")
            print("agent:", await turn(runner, "And in Rome?"))
        elif step == "rewind":
            session = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
            if session is None:
                raise SystemExit("no session yet: run `first`")
            invocations = list(dict.fromkeys(e.invocation_id for e in session.events))
            await runner.rewind_async(
                user_id=USER, session_id=SESSION, rewind_before_invocation_id=invocations[-1]
            )
            session = await service.get_session(app_name=APP, user_id=USER, session_id=SESSION)
            assert session is not None
            print(f"rewound the last turn: state {session.state}")
        else:
            raise SystemExit(f"unknown step {step!r}: first, resume or rewind")
        await runner.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "adk_agent.db"))
