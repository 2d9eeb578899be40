"""Plugins: loading, hook order, the after-commit hooks, a third-party package found by its
entry point, the CLI's `--plugin` and `plugins list`, and `record_interaction`.

(`before_append` refusing and transforming is in the conformance suite, on every store.)
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentledger import (
    ConfigurationError,
    InvalidEventError,
    InvalidTransitionError,
    NewEvent,
    PluginError,
    PluginRejectedError,
    SessionManager,
    SessionNotFoundError,
    hookimpl,
    open_store,
)
from agentledger.plugins import (
    PLUGINS_ENV,
    PluginHost,
    available_plugins,
    enhance,
    plugin_state,
)
from agentledger.stores.base import SessionStore
from agentledger.testing import StoreFactory

HERE = Path(__file__).resolve().parent
PLUGIN_PACKAGE = HERE / "plugin_package"
LOCAL = ("memory", "sqlite", "file", "postgresql")


def msg(text: str = "hi") -> NewEvent:
    return NewEvent(type="user_message", author="user", data={"text": text})


class Recorder:
    """Records every hook call, in order, into a shared list."""

    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name = name
        self.calls = calls
        self.seen: list[Any] = []

    @hookimpl
    def before_append(self, events: list[NewEvent]) -> None:
        self.calls.append((self.name, "before_append"))

    @hookimpl
    def after_append(self, session: Any, events: list[Any], store: SessionStore) -> None:
        self.calls.append((self.name, "after_append"))
        self.seen.append((session.version, [(e.seq, e.type) for e in events], store))

    @hookimpl
    def session_created(self, session: Any) -> None:
        self.calls.append((self.name, "session_created"))

    @hookimpl
    def session_finalized(self, session: Any, event: Any) -> None:
        self.calls.append((self.name, "session_finalized"))
        self.seen.append(("finalized", session.phase, event.type))


@pytest.fixture(params=LOCAL)
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory on every in-process store (the hooks after a commit run in the writer's
    process, so these checks read what the plugin object saw)."""
    from conftest import STORE_URLS

    made = STORE_URLS[request.param](tmp_path)
    if isinstance(made, str):
        factory = StoreFactory(made)
        yield factory
        factory.close_all()
    else:
        with made as url:
            factory = StoreFactory(url)
            yield factory
            factory.close_all()


def test_after_hooks_see_what_was_committed(local_store: StoreFactory) -> None:
    calls: list[tuple[str, str]] = []
    plugin = Recorder("rec", calls)
    store = local_store(plugins=[plugin])
    manager = SessionManager(store)
    session = manager.create_session("agent", app_name="app", user_id="u")
    assert calls == [("rec", "before_append"), ("rec", "after_append"), ("rec", "session_created")]
    assert plugin.seen[0][:2] == (1, [(1, "session_created")])
    assert plugin.seen[0][2] is store
    calls.clear()
    store.append(session.id, [msg("a"), msg("b")])
    assert calls == [("rec", "before_append"), ("rec", "after_append")]
    assert plugin.seen[-1][:2] == (3, [(2, "user_message"), (3, "user_message")])
    calls.clear()
    manager.finalize_session(session.id, "completed", "done")
    assert calls[-1] == ("rec", "session_finalized")
    assert plugin.seen[-1] == ("finalized", "completed", "session_finalized")
    # A refused append (by the lifecycle) runs no after hook.
    calls.clear()
    with pytest.raises(InvalidTransitionError):
        store.append(session.id, [msg("late")])
    assert calls == [("rec", "before_append")]


def test_a_failing_after_append_is_logged_and_the_append_stands(
    local_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name = "broken"

        @hookimpl
        def after_append(self) -> None:
            raise RuntimeError("observer down")

    calls: list[tuple[str, str]] = []
    store = local_store(plugins=[Broken(), Recorder("next", calls)])
    sid = store.create_session(app_name="app", user_id="u").id
    with caplog.at_level(logging.ERROR, logger="agentledger.plugins"):
        (event,) = store.append(sid, [msg()])
    assert event.seq == 2
    assert store.get_session(sid).version == 2
    assert ("next", "after_append") in calls  # the next observer still ran
    assert "plugin 'broken' failed in after_append" in caplog.text
    assert "observer down" in caplog.text


def test_hook_order_is_naming_order_with_tryfirst_and_trylast() -> None:
    calls: list[tuple[str, str]] = []

    class Last:
        name = "last"

        @hookimpl(trylast=True)
        def before_append(self) -> None:
            calls.append(("last", "before_append"))

    class First:
        name = "first"

        @hookimpl(tryfirst=True)
        def before_append(self) -> None:
            calls.append(("first", "before_append"))

    plugins = [Last(), Recorder("a", calls), Recorder("b", calls), First(), Recorder("c", calls)]
    with open_store("memory://", plugins=plugins) as store:
        calls.clear()
        sid = store.create_session(app_name="app", user_id="u").id
        calls.clear()
        store.append(sid, [msg()])
    before = [name for name, hook in calls if hook == "before_append"]
    assert before == ["first", "a", "b", "c", "last"]
    after = [name for name, hook in calls if hook == "after_append"]
    assert after == ["a", "b", "c"]


def test_each_plugin_sees_the_events_the_one_before_left() -> None:
    class Tag:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def before_append(self, events: list[NewEvent]) -> None:
            for i, event in enumerate(events):
                trail = event.data.get("trail", [])
                events[i] = enhance(
                    event.model_copy(update={"data": {**event.data, "trail": [*trail, self.name]}}),
                    self.name,
                    {"n": len(trail)},
                )

    with open_store("memory://", plugins=[Tag("x"), Tag("y")]) as store:
        sid = store.create_session(app_name="app", user_id="u").id
        (event,) = store.append(sid, [msg()])
    assert event.data["trail"] == ["x", "y"]
    assert event.data["plugins"] == {"x": {"n": 0}, "y": {"n": 1}}


def test_a_plugin_may_drop_or_add_events_but_not_forge_a_creation() -> None:
    class Filter:
        name = "filter"

        @hookimpl
        def before_append(self, events: list[NewEvent]) -> None:
            events[:] = [e for e in events if e.data.get("text") != "drop me"]
            if any(e.data.get("text") == "forge" for e in events):
                events.append(NewEvent(type="session_created", data={}))
            if any(e.data.get("text") == "junk" for e in events):
                events.append("not an event")  # type: ignore[arg-type]

    with open_store("memory://", plugins=[Filter()]) as store:
        sid = store.create_session(app_name="app", user_id="u").id
        stored = store.append(sid, [msg("keep"), msg("drop me")])
        assert [e.data["text"] for e in stored] == ["keep"]
        for text in ("forge", "junk"):
            with pytest.raises(PluginError) as caught:
                store.append(sid, [msg(text)])
            assert caught.value.plugin == "filter"
        assert store.get_session(sid).version == 2


def test_no_plugin_means_no_host_and_plugins_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    with open_store("memory://") as store:
        assert store.plugins is None  # type: ignore[attr-defined]
    monkeypatch.setenv(PLUGINS_ENV, "redact")
    with open_store("memory://") as store:
        assert store.plugins is not None and store.plugins.names == ("redact",)  # type: ignore[attr-defined]
        sid = store.create_session(app_name="app", user_id="u").id
        (event,) = store.append(sid, [NewEvent(type="user_message", data={"password": "pw"})])
        assert event.data == {"password": "[REDACTED:password]"}
    # An explicit list wins over the environment; a URL option names them too.
    with open_store("memory://", plugins=[]) as store:
        assert store.plugins is None  # type: ignore[attr-defined]
    monkeypatch.delenv(PLUGINS_ENV)
    with open_store("memory://?plugins=redact") as store:
        assert store.plugins.names == ("redact",)  # type: ignore[attr-defined]


def test_bad_plugins_are_configuration_errors_and_create_nothing(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with pytest.raises(ConfigurationError, match="unknown plugin 'nope'; available: .*redact"):
        open_store(f"sqlite:///{db}", plugins=["nope"])
    assert not db.exists()
    with pytest.raises(ConfigurationError, match="cannot load plugin"):
        open_store("memory://", plugins=["no_such_module_xyz:thing"])

    class Wrapper:
        @hookimpl(wrapper=True)
        def before_append(self) -> Any:
            return (yield)

    with pytest.raises(ConfigurationError, match="wrappers are not supported"):
        open_store("memory://", plugins=[Wrapper()])

    class Typo:
        @hookimpl
        def before_apend(self) -> None: ...

    with pytest.raises(ConfigurationError, match="before_apend"):
        open_store("memory://", plugins=[Typo()])

    class Extra:
        @hookimpl
        def after_append(self, events: Any, nonsense: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="nonsense"):
        open_store("memory://", plugins=[Extra()])
    with pytest.raises(ConfigurationError, match="named twice"):
        open_store("memory://", plugins=["redact", "redact"])


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[str]:
    """An http:// store served by the tests' server (which runs the conformance plugin)."""
    from conftest import http_store_url

    with http_store_url("sqlite", tmp_path) as url:
        yield url


def test_a_rejection_over_http_is_the_same_error(http_url: str) -> None:
    from agentledger.testing.conformance import CONFORMANCE_PLUGIN

    store_url = http_url
    with open_store(store_url, plugins=[CONFORMANCE_PLUGIN]) as store:
        assert store.server_plugins == ("conformance",)  # type: ignore[attr-defined]
        sid = store.create_session(app_name="app", user_id="u").id
        with pytest.raises(PluginRejectedError) as caught:
            store.append(sid, [NewEvent(type="user_message", data={"conformance": "reject"})])
        assert caught.value.plugin == "conformance"
        assert str(caught.value).startswith("plugin 'conformance' rejected the append")
    # The server does not run redact: asking for it is refused, naming the fix.
    with pytest.raises(ConfigurationError, match="plugins run in the server process.*redact"):
        open_store(store_url, plugins=["redact"])


def test_plugin_host_reports_hooks() -> None:
    host = PluginHost([Recorder("rec", []), "redact"])
    assert host.names == ("rec", "redact")
    assert host.hooks_of("rec") == [
        "before_append", "after_append", "session_created", "session_finalized"
    ]
    assert host.hooks_of("redact") == ["before_append", "before_state_update"]
    assert not PluginHost(["redact"]).has_after_hooks


# -- record_interaction ---------------------------------------------------------------------


def test_record_interaction_is_one_turn_in_one_append() -> None:
    calls: list[tuple[str, str]] = []
    with open_store("memory://", plugins=[Recorder("rec", calls)]) as store:
        manager = SessionManager(store)
        sid = manager.create_session("agent", app_name="app", user_id="u").id
        calls.clear()
        asked, answered = manager.record_interaction(
            sid, "Analyze main.py for errors", "Found 3 potential issues in main.py"
        )
        assert calls == [("rec", "before_append"), ("rec", "after_append")]  # one append
        assert (asked.seq, asked.type, asked.author) == (2, "user_message", "user")
        assert (answered.seq, answered.type, answered.author) == (3, "final_output", "agent")
        assert asked.data == {"text": "Analyze main.py for errors"}
        assert answered.data == {"text": "Found 3 potential issues in main.py"}
        assert asked.invocation_id and asked.invocation_id == answered.invocation_id
        again = manager.record_interaction(sid, "q", "r", invocation_id="turn-7")
        assert {e.invocation_id for e in again} == {"turn-7"}
        with pytest.raises(InvalidEventError):
            manager.record_interaction(sid, "q", 42)  # type: ignore[arg-type]
        with pytest.raises(SessionNotFoundError):
            manager.record_interaction("missing", "q", "r")
        manager.suspend(sid)
        with pytest.raises(InvalidTransitionError):
            manager.record_interaction(sid, "q", "r")
        assert store.get_session(sid).version == 6  # 1 + 2 + 2 + suspend


# -- a third-party package, installed with pip -----------------------------------------------


@pytest.fixture(scope="session")
def acme_installed() -> str:
    """Install tests/plugin_package (distribution `agentledger-acme`, entry point `acme`)
    into the running environment, as a user would, without downloading anything."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", str(PLUGIN_PACKAGE)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    importlib.invalidate_caches()
    return "acme"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV}
    return subprocess.run(
        [sys.executable, "-m", "agentledger", *args],
        capture_output=True, text=True, timeout=120, env={**environ, **(env or {})},
    )


def test_a_third_party_plugin_is_discovered_and_runs(acme_installed: str, tmp_path: Path) -> None:
    found = {p.name: p for p in available_plugins()}
    assert found["acme"].source == "entry point (agentledger-acme)"

    listed = _cli("plugins", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["acme"]["enabled"] is False
    assert rows["acme"]["hooks"] == ["before_append", "after_append", "event_handlers"]
    assert rows["acme"]["handlers"] == ["acme"]
    assert rows["redact"]["source"] == "built-in" and rows["redact"]["handlers"] == []

    url = f"sqlite:///{tmp_path}/x.db"
    log = tmp_path / "acme.log"
    env = {"ACME_LOG": str(log)}
    ran = _cli("--store", url, "--plugin", "acme", "run", "remind me to call Ada", env=env)
    assert ran.returncode == 0, ran.stderr
    with open_store(url) as store:
        (session,) = store.list_sessions().sessions
        events = store.read_events(session.id)
        current = store.get_session(session.id)
    asked = next(e for e in events if e.type == "user_message")
    assert asked.data["plugins"] == {"acme": {"stamped": True}}
    lines = log.read_text().splitlines()
    assert f"{session.id} 1 session_created" in lines
    assert f"{session.id} {asked.seq} user_message" in lines
    # Its durable handler ran inline, in the CLI's process: its state is in the session.
    counted = [e for e in events if e.type == "metadata_updated" and e.author == "acme"]
    assert [e.data["caused_by"]["seq"] for e in counted] == [asked.seq]
    assert plugin_state(current, "acme") == {"messages": 1, "last_seq": asked.seq}
    status = _cli("--store", url, "--plugin", "acme", "handlers", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    (acme_status,) = json.loads(status.stdout)
    assert acme_status["name"] == "acme" and acme_status["lag"] == 0
    none = _cli("--store", url, "handlers", "status")
    assert none.returncode == 2 and "--plugin NAME" in none.stderr

    refused = _cli("--store", url, "--plugin", "acme", "run", "-s", session.id,
                   "say forbidden", env=env)
    assert refused.returncode == 1
    assert "plugin 'acme' rejected the append: acme refuses the word 'forbidden'" in refused.stderr
    with open_store(url) as store:
        assert store.get_session(session.id).version == session.version

    enabled = _cli("--plugin", "acme", "plugins", "list", env={PLUGINS_ENV: "redact"})
    assert enabled.returncode == 0, enabled.stderr
    table = enabled.stdout.splitlines()
    assert table[0].split() == ["NAME", "ENABLED", "SOURCE", "HOOKS", "HANDLERS"]
    acme_row = next(line for line in table if line.startswith("acme "))
    redact_row = next(line for line in table if line.startswith("redact "))
    assert "yes (2)" in acme_row and "before_append, after_append" in acme_row
    assert acme_row.rstrip().endswith("event_handlers  acme")
    assert "yes (1)" in redact_row

    bad = _cli("--store", url, "--plugin", "nope", "sessions", "list")
    assert bad.returncode == 1
    assert "unknown plugin 'nope'" in bad.stderr


def test_the_cli_adds_plugin_options_to_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentledger.cli.app import CliState

    monkeypatch.setenv(PLUGINS_ENV, "redact, acme")
    assert CliState("memory://", ["acme", "extra"]).plugin_names() == ["redact", "acme", "extra"]
    monkeypatch.delenv(PLUGINS_ENV)
    state = CliState("memory://", ["redact"])
    try:
        store = state.open()
        assert store.plugins is not None and store.plugins.names == ("redact",)  # type: ignore[attr-defined]
    finally:
        state.close()


def test_a_handler_plugin_runs_inline_in_the_server(acme_installed: str, tmp_path: Path) -> None:
    """An http:// store's plugins run in the server: so do their handlers, inline, for every
    client's append."""
    pytest.importorskip("fastapi", reason="the http:// store tests need the server extra")
    from http_support import ServedStores

    server = ServedStores(f"sqlite:///{tmp_path}/{{name}}.db", env={PLUGINS_ENV: acme_installed})
    try:
        url = server.url()
        with open_store(url, plugins=["acme"]) as store:
            sid = store.create_session(app_name="app", user_id="u").id
            (asked,) = store.append(sid, [msg("over http")])
            state = plugin_state(store.get_session(sid), "acme")
            assert state == {"messages": 1, "last_seq": asked.seq}
        server.release(url)
    finally:
        server.stop()


def test_plugins_list_names_the_extra_a_built_in_plugin_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without OpenTelemetry installed (the `otel` extra), `plugins list` says what to
    install for the `otel` plugin instead of printing an error in the table."""
    from typer.testing import CliRunner

    from agentledger.cli import app

    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "agentledger.otel", raising=False)
    result = CliRunner().invoke(app, ["plugins", "list"], env={"AGENTLEDGER_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    (otel,) = [line for line in result.output.splitlines() if line.startswith("otel")]
    assert "(needs pip install 'agentledger[otel]')" in otel and "error" not in otel
