"""Durable event handlers as plugins: the store runs them right after each append (inline),
`inline_handlers=False` leaves them to a worker, a failing one never fails the append, and
a plugin keeps its own data in events (`enhance`) and in session metadata (`plugin_state`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handler_support import Echo

from agentledger import ConfigurationError, Event, NewEvent, Session, SessionStore, hookimpl
from agentledger.handlers import EventHandler, HandlerRunner
from agentledger.plugins import PluginHost, enhance, plugin_state, plugin_state_event
from agentledger.testing import StoreFactory, msg

LOCAL = ("memory", "sqlite", "file", "postgresql")


@pytest.fixture(params=LOCAL)
def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory on every in-process store (inline handlers run in the writer's process)."""
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


def _echoes(store: SessionStore, session_id: str) -> list[Event]:
    return [e for e in store.read_events(session_id) if e.type == "plugin.echo"]


class Counting(EventHandler):
    """A plugin that is an event handler, enhances user messages before they are written
    and counts them in its own session state."""

    name = "counting"
    handler_name = "counting"
    handled_event_types = ["user_message"]

    @hookimpl
    def before_append(self, events: list[NewEvent]) -> None:
        for i, event in enumerate(events):
            if event.type == "user_message":
                events[i] = enhance(event, self.name, {"length": len(event.data.get("text", ""))})

    def handle_event(self, event: Event, session: Session) -> NewEvent:
        seen = plugin_state(session, self.name).get("messages", 0)
        return plugin_state_event(self.name, {"messages": seen + 1, "last_seq": event.seq})


class Provider:
    """A plugin that provides handlers through the `event_handlers` hook."""

    name = "provider"

    def __init__(self, *handlers: Any) -> None:
        self.handlers = list(handlers)

    @hookimpl
    def event_handlers(self) -> list[Any]:
        return self.handlers


class Broken(EventHandler):
    handler_name = "broken"
    handled_event_types = ["user_message"]

    def handle_event(self, event: Event, session: Session) -> None:
        raise RuntimeError("handler down")


def test_a_plugin_handler_runs_inline_right_after_the_append(local_store: StoreFactory) -> None:
    store = local_store(plugins=[Echo()])
    sid = store.create_session(app_name="demo", user_id="ada").id
    (asked,) = store.append(sid, [msg("one")])
    (echo,) = _echoes(store, sid)  # there when append returned: no worker ran
    assert echo.author == "echo" and echo.data["echo"] == "one"
    assert echo.data["caused_by"]["seq"] == asked.seq
    store.append(sid, [msg("double")])
    assert [e.data["echo"] for e in _echoes(store, sid)] == ["one", "double", "double"]
    (status,) = HandlerRunner(store, [Echo()]).status()
    assert status.lag == 0 and not status.failing
    # A worker started afterwards finds nothing left to do and adds nothing.
    assert HandlerRunner(store, [Echo()]).run_once() == 0
    assert len(_echoes(store, sid)) == 3


def test_handlers_from_the_event_handlers_hook_run_inline(local_store: StoreFactory) -> None:
    store = local_store(plugins=[Provider(Echo())])
    assert store.plugins is not None
    assert store.plugins.handler_plugins == {"provider": ["echo"]}
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("hi")])
    assert [e.data["echo"] for e in _echoes(store, sid)] == ["hi"]


def test_enhancement_and_plugin_state(local_store: StoreFactory) -> None:
    store = local_store(plugins=[Counting()])
    sid = store.create_session(app_name="demo", user_id="ada", metadata={"team": "x"}).id
    (first,) = store.append(sid, [msg("hello")])
    assert first.data["plugins"] == {"counting": {"length": 5}}
    store.append(sid, [msg("a"), msg("bb")])
    session = store.get_session(sid)
    # seqs: hello 2, its update 3, "a" 4, "bb" 5; each update saw the one before.
    assert plugin_state(session, "counting") == {"messages": 3, "last_seq": first.seq + 3}
    assert session.metadata["team"] == "x"  # the rest of the metadata is kept
    assert plugin_state(session, "someone-else") == {}
    updates = [e for e in store.read_events(sid) if e.type == "metadata_updated"]
    assert len(updates) == 3 and {e.author for e in updates} == {"counting"}


def test_inline_off_leaves_the_work_to_a_worker(local_store: StoreFactory) -> None:
    store = local_store(plugins=[Echo()], inline_handlers=False)
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("later")])
    assert _echoes(store, sid) == []
    assert store.plugins is not None
    worker = HandlerRunner(store, store.plugins.event_handlers)
    assert worker.run_once() == 1
    assert [e.data["echo"] for e in _echoes(store, sid)] == ["later"]


def test_a_handler_may_opt_out_of_inline_runs(tmp_path: Path) -> None:
    class Slow(Echo):
        inline = False

    factory = StoreFactory(f"sqlite:///{tmp_path}/x.db?inline_handlers=true")
    store = factory(plugins=[Slow()])
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("later")])
    assert _echoes(store, sid) == []
    assert HandlerRunner(store, [Slow()]).run_once() == 1
    assert len(_echoes(store, sid)) == 1
    factory.close_all()
    with pytest.raises(ConfigurationError, match="inline_handlers"):
        StoreFactory("memory://")(plugins=[Echo()], inline_handlers="maybe")


def test_a_failing_inline_handler_never_fails_the_append(
    local_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = local_store(plugins=[Broken(), Echo()])
    sid = store.create_session(app_name="demo", user_id="ada").id
    with caplog.at_level(logging.WARNING):
        (event,) = store.append(sid, [msg("one")])
        store.append(sid, [msg("two")])  # the broken one waits for its retry; this works
    assert store.get_session(sid).version == 5  # 2 messages, 2 echoes
    assert [e.data["echo"] for e in _echoes(store, sid)] == ["one", "two"]  # the other ran
    broken, echo = HandlerRunner(store, [Broken(), Echo()]).status()
    assert broken.failing and broken.last_error == "RuntimeError: handler down"
    assert broken.position < store.feed_position() and event.seq == 2
    assert not echo.failing and echo.lag == 0
    assert "event handler broken failed" in caplog.text


def test_derived_appends_do_not_recurse(local_store: StoreFactory) -> None:
    class Everything(EventHandler):
        """Handles every type, its own derived events included (which the runner skips)."""

        handler_name = "everything"
        handled_event_types: list[str] = []
        calls = 0

        def handle_event(self, event: Event, session: Session) -> NewEvent:
            Everything.calls += 1
            return NewEvent(type="plugin.seen", data={"of": event.type})

    class Second(EventHandler):
        """Reacts to what the first derived from a user message: a chain, then quiet."""

        handler_name = "second"
        handled_event_types = ["plugin.seen"]

        def handle_event(self, event: Event, session: Session) -> NewEvent | None:
            if event.data["of"] != "user_message":
                return None
            return NewEvent(type="plugin.second", data={})

    store = local_store(plugins=[Provider(Everything(), Second())])
    sid = store.create_session(app_name="demo", user_id="ada").id
    store.append(sid, [msg("x")])
    seen = [e.data["of"] for e in store.read_events(sid) if e.type == "plugin.seen"]
    # Everything saw session_created, the message and Second's event, each once, all
    # while the append ran (nested appends ran nothing twice); never its own events.
    assert sorted(seen) == ["plugin.second", "session_created", "user_message"]
    assert [e.type for e in store.read_events(sid)].count("plugin.second") == 1
    assert Everything.calls == 3


def test_concurrent_writers_leave_no_event_unhandled(tmp_path: Path) -> None:
    factory = StoreFactory(f"sqlite:///{tmp_path}/x.db")
    store = factory(plugins=[Echo()])
    sids = [store.create_session(app_name="demo", user_id=f"u{i}").id for i in range(4)]

    def write(sid: str) -> None:
        for i in range(15):
            store.append(sid, [msg(f"m{i}")])

    threads = [threading.Thread(target=write, args=(sid,)) for sid in sids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sid in sids:
        echoes = _echoes(store, sid)
        assert sorted(e.data["caused_by"]["seq"] for e in echoes) == sorted(
            e.seq for e in store.read_events(sid) if e.type == "user_message"
        )
    assert HandlerRunner(store, [Echo()]).status()[0].lag == 0
    factory.close_all()


def test_bad_handler_plugins_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="named twice: echo"):
        PluginHost([Echo(), Provider(Echo())])

    class Failing:
        name = "failing"

        @hookimpl
        def event_handlers(self) -> list[Any]:
            raise RuntimeError("no config")

    with pytest.raises(ConfigurationError, match="plugin 'failing': event_handlers raised"):
        PluginHost([Failing()])
    with pytest.raises(ConfigurationError, match="plugin 'provider'"):
        PluginHost([Provider(object())])


def test_the_otel_plugin_is_the_exporter_on_the_global_providers() -> None:
    pytest.importorskip("opentelemetry")
    from agentledger.otel import OTelExporter

    host = PluginHost(["otel"])
    (exporter,) = host.event_handlers
    assert isinstance(exporter, OTelExporter) and host.handler_plugins == {"otel": ["otel"]}
    assert host.hooks_of("otel") == ["before_append", "after_append"]  # append durations
