"""The Google ADK adapter (`agentledger.integrations.adk`).

1. ADK's own session-service tests (`tests/unittests/sessions/test_session_service.py` of
   google/adk-python), taken at test time from a local git mirror of the repository (the
   google-adk sdist on PyPI carries no tests): `$AGENTLEDGER_ADK_MIRROR`, by default
   `/work/.mirror/google+adk-python/repo`; skipped with the reason when it is absent. The
   tag is `v<installed version>` when the mirror has it, else the newest tag below it (the
   tag used is in the test's output). Run in a subprocess with ADK's session services
   swapped for ours (`tests/adk_peer/conftest_peer.py`), on SQLite and on PostgreSQL.
2. Our own: the mapping, stale writers, index reads, eight processes on one session, a
   SIGKILL mid-append, the CLI, ADK's service registry, the example, the benchmark.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.adk", reason="the ADK adapter needs `pip install 'agentledger[adk]'`")

from google.adk.errors import StaleSessionError  # noqa: E402
from google.adk.events import Event, EventActions  # noqa: E402
from google.adk.sessions.base_session_service import GetSessionConfig  # noqa: E402
from google.genai import types  # noqa: E402

from agentledger import open_store  # noqa: E402
from agentledger.integrations.adk import LedgerSessionService, event_type_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PEER_CONFTEST = Path(__file__).resolve().parent / "adk_peer" / "conftest_peer.py"
MIRROR = Path(os.environ.get("AGENTLEDGER_ADK_MIRROR", "/work/.mirror/google+adk-python/repo"))
PEER_DIR = "tests/unittests/sessions"
POSTGRES_URL_ENV = "AGENTLEDGER_TEST_POSTGRES_URL"

PEER_EXCLUDED: dict[str, str] = {
    # Both assert `not session.state.get('temp:key')` right after `append_event`. ADK 2.x
    # keeps `temp:` values in the in-memory session for the rest of the invocation
    # (`BaseSessionService._apply_temp_state`), so ADK's own InMemorySessionService and
    # DatabaseSessionService fail them too on the installed ADK; temp: values are never
    # stored by ours (checked in test_temp_state_is_never_stored below).
    "test_session_state": "asserts ADK 1.x temp: behaviour; ADK 2.x's own services fail it",
    "test_create_new_session_will_merge_states": (
        "asserts ADK 1.x temp: behaviour; ADK 2.x's own services fail it"
    ),
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- 1. ADK's own tests -----------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={MIRROR}", *args], check=True, capture_output=True, text=True
    ).stdout


def _version_key(tag: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in tag.lstrip("v").split("."))


def _peer_tag() -> str:
    from google.adk.version import __version__

    if shutil.which("git") is None or not MIRROR.is_dir():
        pytest.skip(
            f"ADK's session tests come from a git mirror of google/adk-python at {MIRROR} "
            "(set AGENTLEDGER_ADK_MIRROR); the google-adk sdist on PyPI ships no tests"
        )
    tags = [t for t in _git("tag").split() if t.startswith("v") and t[1:2].isdigit()]
    if f"v{__version__}" in tags:
        return f"v{__version__}"
    older = [t for t in tags if _version_key(t) <= _version_key(__version__)]
    if not older:
        pytest.skip(f"the mirror at {MIRROR} has no tag at or below ADK {__version__}")
    return max(older, key=_version_key)


def _extract_peer_tests(dest: Path) -> str:
    tag = _peer_tag()
    for name in _git("ls-tree", "--name-only", f"{tag}:{PEER_DIR}").split():
        if name.endswith(".py") and name != "__init__.py":
            (dest / name).write_text(_git("show", f"{tag}:{PEER_DIR}/{name}"))
    shutil.copy(PEER_CONFTEST, dest / "conftest.py")
    (dest / "pytest.ini").write_text("[pytest]\n")
    return tag


def _run_peer_suite(tmp_path: Path, backend: str) -> dict[str, Any]:
    tag = _extract_peer_tests(tmp_path)
    report = tmp_path / "report.xml"
    deselect = " and ".join(["not DATABASE", *(f"not {name}" for name in PEER_EXCLUDED)])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), f"--junitxml={report}",
         "-k", deselect, str(tmp_path / "test_session_service.py")],
        cwd=tmp_path, env={**os.environ, "AGENTLEDGER_ADK_PEER_BACKEND": backend},
        capture_output=True, text=True, timeout=600,
    )
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    from google.adk.version import __version__

    print(f"ADK {__version__}, {PEER_DIR} at {tag} on {backend.split('://')[0]}: {counts}")
    assert counts["failures"] == counts["errors"] == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert counts["tests"] - counts["skipped"] > 0, proc.stdout[-2000:]
    return counts


def test_adk_session_tests_on_sqlite(tmp_path: Path) -> None:
    _run_peer_suite(tmp_path, "sqlite")


def test_adk_session_tests_on_postgresql(tmp_path: Path) -> None:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {POSTGRES_URL_ENV} is not set")
        pytest.skip(f"set {POSTGRES_URL_ENV} to run ADK's session tests on PostgreSQL")
    pytest.importorskip("psycopg")
    _run_peer_suite(tmp_path, url)


# -- 2. our own ---------------------------------------------------------------------------


def _text(author: str, text: str, **kwargs: Any) -> Event:
    role = "user" if author == "user" else "model"
    return Event(
        author=author,
        content=types.Content(role=role, parts=[types.Part(text=text)]),
        **kwargs,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'adk.db'}"


def test_events_map_onto_ledger_events(url: str) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.create_session(app_name="a", user_id="u", session_id="s")
            call = types.Part(function_call=types.FunctionCall(name="f", args={"x": 1}))
            reply = types.Part(
                function_response=types.FunctionResponse(name="f", response={"y": 2})
            )
            events = [
                _text("user", "hi", invocation_id="i1"),
                Event(author="bot", invocation_id="i1",
                      content=types.Content(role="model", parts=[call])),
                Event(author="bot", invocation_id="i1",
                      content=types.Content(role="user", parts=[reply])),
                _text("bot", "done", invocation_id="i1"),
                Event(author="bot", invocation_id="i1", error_code="E", error_message="m"),
                Event(author="bot", invocation_id="i1", actions=EventActions(escalate=True)),
            ]
            for event in events:
                await service.append_event(session, event)
            loaded = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert loaded is not None and loaded.events == session.events
            assert loaded == session
        with open_store(url) as store:
            stored = store.read_events("s")
        assert [e.type for e in stored] == [
            "session_created", "user_message", "tool_call", "tool_result", "agent_message",
            "error", "adk.event",
        ]
        assert [event_type_of(e) for e in events] == [e.type for e in stored[1:]]
        for ours, theirs in zip(stored[1:], events, strict=True):
            assert ours.key == f"adk:{theirs.id}"
            assert ours.author == theirs.author and ours.invocation_id == "i1"
            assert Event.model_validate(ours.data) == theirs

    run(go())


def test_stale_writer_is_refused_through_the_version(url: str) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            await service.create_session(app_name="a", user_id="u", session_id="s")
            first = await service.get_session(app_name="a", user_id="u", session_id="s")
            second = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert first is not None and second is not None
            await service.append_event(first, _text("user", "one"))
            late = _text("user", "two")
            with pytest.raises(StaleSessionError):
                await service.append_event(second, late)
            again = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert again is not None and [e.id for e in again.events] == [first.events[0].id]
            await service.append_event(again, late)  # re-read, then the retry lands
            with open_store(url) as store:
                assert store.get_session("s").version == 3

    run(go())


def test_retry_of_a_stored_event_writes_nothing(url: str) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.create_session(app_name="a", user_id="u", session_id="s")
            event = _text("user", "once")
            await service.append_event(session, event)
            stale = await service.create_session(app_name="a", user_id="u", session_id="t")
            stale.id = "s"  # a copy that never saw its own acknowledged append
            await service.append_event(stale, event.model_copy())
        with open_store(url) as store:
            assert store.get_session("s").version == 2

    run(go())


def test_state_scopes_nulls_and_temp(url: str) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.create_session(
                app_name="a", user_id="u", session_id="s", state={"k": None, "temp:t": 1}
            )
            delta = {"app:theme": "dark", "user:lang": "en", "temp:scratch": 2, "gone": None}
            await service.append_event(session, Event(
                author="bot", actions=EventActions(state_delta=delta)
            ))
            assert session.state["temp:scratch"] == 2  # ADK keeps it for the invocation
            other = await service.create_session(app_name="a", user_id="u", session_id="s2")
            assert other.state == {"app:theme": "dark", "user:lang": "en"}
            assert await service.get_user_state(app_name="a", user_id="u") == {"lang": "en"}
            loaded = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert loaded is not None
            assert loaded.state == {"k": None, "gone": None, "app:theme": "dark",
                                    "user:lang": "en"}
        with open_store(url) as store:
            assert store.get_scoped_state("a") == {"app:theme": "dark"}
            assert all("temp:" not in json.dumps(e.data) + json.dumps(e.state_delta)
                       for e in store.read_events("s"))

    run(go())


def test_temp_state_is_never_stored(url: str) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.create_session(app_name="a", user_id="u", session_id="s")
            await service.append_event(session, Event(
                author="bot", actions=EventActions(state_delta={"temp:x": 1})
            ))
            loaded = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert loaded is not None and "temp:x" not in loaded.state
            assert loaded.events[0].actions.state_delta == {}

    run(go())


def test_get_session_reads_through_the_index(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.create_session(app_name="a", user_id="u", session_id="s")
            for i in range(30):
                await service.append_event(session, _text("user", f"m{i}"))
            calls: list[dict[str, Any]] = []
            real = service.store.read_events

            async def spy(session_id: str, **kwargs: Any) -> Any:
                calls.append(kwargs)
                return await real(session_id, **kwargs)

            monkeypatch.setattr(service.store, "read_events", spy)
            recent = await service.get_session(
                app_name="a", user_id="u", session_id="s",
                config=GetSessionConfig(num_recent_events=5),
            )
            assert recent is not None
            assert [e.content.parts[0].text for e in recent.events if e.content and
                    e.content.parts] == [f"m{i}" for i in range(25, 30)]
            assert calls[-1]["last"] == 5
            cut = session.events[20].timestamp
            after = await service.get_session(
                app_name="a", user_id="u", session_id="s",
                config=GetSessionConfig(after_timestamp=cut),
            )
            assert after is not None and after.events == session.events[20:]
            assert calls[-1]["after_timestamp"] is not None
            none = await service.get_session(
                app_name="a", user_id="u", session_id="s",
                config=GetSessionConfig(num_recent_events=0),
            )
            assert none is not None and none.events == []

    run(go())


def test_sessions_of_other_users_are_not_found(url: str) -> None:
    async def go() -> None:
        async with LedgerSessionService(url) as service:
            await service.create_session(app_name="a", user_id="u", session_id="s")
            assert await service.get_session(app_name="a", user_id="v", session_id="s") is None
            assert await service.get_session(app_name="b", user_id="u", session_id="s") is None
            await service.delete_session(app_name="a", user_id="v", session_id="s")
            assert await service.get_session(app_name="a", user_id="u", session_id="s")
            listed = await service.list_sessions(app_name="a")
            assert [s.id for s in listed.sessions] == ["s"]
            await service.delete_session(app_name="a", user_id="u", session_id="s")
            assert (await service.list_sessions(app_name="a", user_id="u")).sessions == []

    run(go())


# eight processes on one session


def _appender(url: str, worker: int, count: int, out: Any) -> None:
    async def go() -> int:
        stale = 0
        async with LedgerSessionService(url, max_threads=1) as service:
            for n in range(count):
                event = _text("user", f"w{worker}-{n}", invocation_id=f"w{worker}-{n}")
                while True:
                    session = await service.get_session(
                        app_name="a", user_id="u", session_id="s",
                        config=GetSessionConfig(num_recent_events=0),
                    )
                    assert session is not None
                    try:
                        await service.append_event(session, event)
                        break
                    except StaleSessionError:
                        stale += 1
        return stale

    out.put((worker, asyncio.run(go())))


def test_eight_processes_lose_nothing(url: str) -> None:
    processes, per_process = 8, 10

    async def setup() -> None:
        async with LedgerSessionService(url) as service:
            await service.create_session(app_name="a", user_id="u", session_id="s")

    run(setup())
    # fork (where there is one) spares each worker importing ADK again; no thread of the
    # parent is alive here (the services above are closed)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_appender, args=(url, w, per_process, out))
               for w in range(processes)]
    for p in workers:
        p.start()
    results = dict(out.get(timeout=300) for _ in workers)
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(results) == list(range(processes))

    async def check() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert session is not None
            texts = sorted(e.content.parts[0].text for e in session.events
                           if e.content and e.content.parts and e.content.parts[0].text)
            expected = sorted(f"w{w}-{n}" for w in range(processes) for n in range(per_process))
            assert texts == expected  # each exactly once
    run(check())
    with open_store(url) as store:
        assert store.get_session("s").version == 1 + processes * per_process
        assert store.verify_session("s").ok


CRASH_CHILD = textwrap.dedent("""
    import asyncio, sys
    from google.adk.events import Event
    from google.genai import types
    from agentledger.integrations.adk import LedgerSessionService

    async def main(url):
        async with LedgerSessionService(url) as service:
            session = await service.get_session(app_name="a", user_id="u", session_id="s")
            n = 0
            while True:
                event = Event(author="user", invocation_id=f"i{n}", content=types.Content(
                    role="user", parts=[types.Part(text=f"m{n}" + "x" * 2000)]))
                await service.append_event(session, event)
                print(event.id, flush=True)
                n += 1

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_append_leaves_a_session_adk_loads(url: str) -> None:
    async def setup() -> None:
        async with LedgerSessionService(url) as service:
            await service.create_session(app_name="a", user_id="u", session_id="s")

    run(setup())
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, url], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    acked = [child.stdout.readline().strip() for _ in range(25)]
    child.send_signal(signal.SIGKILL)
    child.wait(60)
    acked += [line.strip() for line in child.stdout if line.strip()]

    async def check() -> None:
        async with LedgerSessionService(url) as service:
            session = await service.get_session(app_name="a", user_id="u", session_id="s")
            assert session is not None
            ids = [e.id for e in session.events]
            assert ids[: len(acked)] == acked  # every acknowledged append is there, in order
            assert len(ids) - len(acked) in (0, 1)  # at most the one in flight, whole
            await service.append_event(session, _text("user", "after the crash"))
    run(check())
    with open_store(url) as store:
        assert store.verify_session("s").ok


# first-class in agentledger


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("adk_agent", ROOT / "examples" / "adk_agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_shows_adk_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "ex.db"
    example = _example()
    run(example.main("first", str(db)))
    first = capsys.readouterr().out
    assert "Paris: sunny" in first
    # resumed in a new process, as `python examples/adk_agent.py resume DB`
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "adk_agent.py"), "resume",
                           str(db)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed: 4 events" in done.stdout
    assert "Rome: cloudy, 18°C. Earlier you asked about Paris." in done.stdout
    run(example.main("rewind", str(db)))  # ADK's Runner.rewind_async onto our rewind
    assert "rewound the last turn: state {'cities': ['Paris']" in capsys.readouterr().out

    from typer.testing import CliRunner

    from agentledger.cli import app

    cli = CliRunner()
    store = f"sqlite:///{db}"
    listed = cli.invoke(app, ["--store", store, "sessions", "list"])
    assert listed.exit_code == 0 and "trip" in listed.output and "weather_app" in listed.output
    shown = cli.invoke(app, ["--store", store, "sessions", "show", "trip"])
    assert shown.exit_code == 0 and '"cities"' in shown.output
    events = cli.invoke(app, ["--store", store, "sessions", "events", "trip"], env={
        "COLUMNS": "200"})
    assert events.exit_code == 0, events.output
    for line in ("user_message", "What is the weather in Paris?", "get_weather(city=Paris)",
                 "get_weather →", "Rome: cloudy", "rewound"):
        assert line in events.output
    as_json = cli.invoke(app, ["--store", store, "sessions", "events", "trip", "--json"])
    rows = json.loads(as_json.output)
    assert [r["type"] for r in rows][:5] == [
        "session_created", "user_message", "tool_call", "tool_result", "agent_message"]


def test_adk_cli_resolves_our_uri_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.adk.cli.service_registry import get_service_registry, load_services_module
    from google.adk.cli.utils.service_factory import create_session_service_from_options

    registry = get_service_registry()
    factories = dict(registry._session_factories)
    monkeypatch.setattr(registry, "_session_factories", {
        k: v for k, v in factories.items() if not k.startswith("agentledger+")
    })
    monkeypatch.delitem(sys.modules, "services", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "services.py").write_text(
        "from agentledger.integrations.adk import register_uri_schemes\n"
        "register_uri_schemes()\n"
    )
    load_services_module(str(agents))  # what `adk web`/`adk api_server` do first
    db = tmp_path / "via-adk.db"
    service = create_session_service_from_options(
        base_dir=str(agents), session_service_uri=f"agentledger+sqlite:///{db}"
    )
    assert isinstance(service, LedgerSessionService)
    run(service.create_session(app_name="a", user_id="u", session_id="via-uri"))
    run(service.close())
    with open_store(f"sqlite:///{db}") as store:
        assert store.get_session("via-uri").app_name == "a"


def test_benchmark_quick_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_integrations_adk", ROOT / "benchmarks" / "bench_integrations_adk.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"append_event", "get_session", "goals"} <= set(result["results"])
