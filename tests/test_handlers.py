"""Durable event handlers (`agentledger.handlers`): every feed event handled, every derived
event exactly once, through failures, concurrent runners and processes killed at random."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from handler_support import Echo

from agentledger import Event, NewEvent, Session, SessionStore
from agentledger.errors import ConfigurationError
from agentledger.handlers import HANDLERS_APP, EventHandler, HandlerRunner
from agentledger.testing import msg


def _echoes(store: SessionStore, session_id: str) -> list[Event]:
    return [e for e in store.read_events(session_id) if e.type == "plugin.echo"]


def test_a_handler_answers_each_matching_event_once(store: SessionStore) -> None:
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg("one"), NewEvent(type="agent_message", author="agent")])
    store.append(session.id, [msg("double")])
    runner = HandlerRunner(store, [Echo()])
    assert runner.run_once() == 2
    echoes = _echoes(store, session.id)
    assert [e.data["echo"] for e in echoes] == ["one", "double", "double"]
    assert {e.author for e in echoes} == {"echo"}
    assert [e.data["caused_by"]["seq"] for e in echoes] == [2, 4, 4]
    assert runner.run_once() == 0 and len(_echoes(store, session.id)) == 3
    (status,) = runner.status()
    assert status.position == status.feed_position == store.feed_position() and status.lag == 0
    assert not status.failing
    store.append(session.id, [msg("two")])
    assert runner.status()[0].lag == 1
    assert HandlerRunner(store, [Echo()]).run_once() == 1  # a new runner starts where it was
    assert [e.data["echo"] for e in _echoes(store, session.id)][-1] == "two"


class Strict(Echo):
    """The README's handler: reads `data["text"]`, so an empty payload would fail it."""

    def handle_event(self, event: Event, session: Session) -> list[NewEvent]:
        return [NewEvent(type="plugin.echo", data={"echo": event.data["text"]})]


def test_an_erased_event_is_not_handed_to_handlers(store: SessionStore) -> None:
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg("card 4111"), msg("kept")])
    store.erase_events(session.id, [2], "the user asked")
    runner = HandlerRunner(store, [Strict()])
    assert runner.run_once() == 1
    assert [e.data["echo"] for e in _echoes(store, session.id)] == ["kept"]
    (status,) = runner.status()
    assert not status.failing and status.lag == 0


def test_a_crash_between_append_and_position_adds_nothing_twice(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg("a"), msg("b")])
    runner = HandlerRunner(store, [Echo()], batch=2)  # a page: session_created and "a"
    original = HandlerRunner._save

    def crash(self: HandlerRunner, name: str, before: Any, after: Any) -> bool:
        raise KeyboardInterrupt("killed before the position was stored")

    monkeypatch.setattr(HandlerRunner, "_save", crash)
    with pytest.raises(KeyboardInterrupt):
        runner.run_once()
    assert [e.data["echo"] for e in _echoes(store, session.id)] == ["a"]
    monkeypatch.setattr(HandlerRunner, "_save", original)
    # One page with "a" again (its echo exists: not stored twice) and "b".
    assert HandlerRunner(store, [Echo()]).run_once() == 2
    assert [e.data["echo"] for e in _echoes(store, session.id)] == ["a", "b"]


class Flaky(EventHandler):
    handler_name = "flaky"
    handled_event_types: list[str] = []

    def __init__(self) -> None:
        self.broken = True

    def handle_event(self, event: Event, session: Session) -> None:
        if self.broken and event.data.get("text") == "boom":
            raise RuntimeError("the model is down")


def test_a_failing_handler_stops_at_its_event_and_retries(store: SessionStore) -> None:
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg("fine"), msg("boom"), msg("after")])
    flaky = Flaky()
    runner = HandlerRunner(store, [flaky, Echo()], max_backoff=0.01)
    runner.run_once()
    statuses = {s.name: s for s in runner.status()}
    assert statuses["flaky"].failing and statuses["flaky"].failures == 1
    assert statuses["flaky"].last_error == "RuntimeError: the model is down"
    assert statuses["flaky"].position == store.read_feed()[1].position  # before "boom"
    assert statuses["echo"].lag == 0  # the other handler went on
    assert len(_echoes(store, session.id)) == 3
    time.sleep(0.02)
    runner.run_once()
    assert runner.status()[0].failures == 2  # retried, failed again
    flaky.broken = False
    time.sleep(0.03)
    runner.run_once()
    healthy = runner.status()[0]
    assert not healthy.failing and healthy.last_error is None and healthy.lag == 0


class AsyncEcho(Echo):
    handler_name = "async-echo"

    async def handle_event(self, event: Event, session: Session) -> list[NewEvent]:  # type: ignore[override]
        return [NewEvent(type="plugin.echo", data={"echo": event.data.get("text")})]


def test_an_async_handler_runs(store: SessionStore) -> None:
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg("hi")])
    HandlerRunner(store, [AsyncEcho()]).run_once()
    assert [e.author for e in _echoes(store, session.id)] == ["async-echo"]


def test_concurrent_runners_derive_each_event_once(store: SessionStore) -> None:
    sessions = [store.create_session(app_name="demo", user_id=f"u{i}").id for i in range(3)]
    for sid in sessions:
        store.append(sid, [msg(str(i)) for i in range(10)])
    runners = [HandlerRunner(store, [Echo()], batch=3) for _ in range(3)]
    threads = [threading.Thread(target=r.run_once) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while HandlerRunner(store, [Echo()]).run_once():
        pass
    for sid in sessions:
        assert [e.data["echo"] for e in _echoes(store, sid)] == [str(i) for i in range(10)]


def test_bad_handlers_are_refused(store: SessionStore) -> None:
    class Nameless(Echo):
        handler_name = ""

    with pytest.raises(ConfigurationError):
        HandlerRunner(store, [Nameless()])
    with pytest.raises(ConfigurationError):
        HandlerRunner(store, [Echo(), Echo()])


def test_positions_are_stored_as_the_handlers_app_state(store: SessionStore) -> None:
    session = store.create_session(app_name="demo", user_id="ada")
    store.append(session.id, [msg()])
    HandlerRunner(store, [Echo()]).run_once()
    assert store.get_scoped_state(HANDLERS_APP)["app:echo"]["position"] == store.feed_position()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_handlers_killed_at_random_points_handle_every_event_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/h.db"
    else:
        from conftest import postgres_schema_url

        context = postgres_schema_url()
        url = context.__enter__()
        request.addfinalizer(lambda: context.__exit__(None, None, None))
    from agentledger import open_store

    rng = random.Random(7)
    support = str(Path(__file__).with_name("handler_support.py"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    with open_store(url) as store:
        sessions = [store.create_session(app_name="demo", user_id=f"u{i}").id for i in range(4)]
        kills = 0
        while kills < 30:
            for sid in rng.sample(sessions, 3):
                store.append(sid, [msg(rng.choice(["x", "double"])) for _ in range(rng.randint(2, 8))])
            worker = subprocess.Popen([sys.executable, support, url], env=env, stdout=subprocess.PIPE)
            assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.03))  # somewhere in its work
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                kills += 1
            worker.wait()
        done = subprocess.run(
            [sys.executable, support, url], env=env, timeout=300, stdout=subprocess.DEVNULL
        )
        assert done.returncode == 0
        for sid in sessions:
            events = store.read_events(sid)
            wanted = Counter()
            for e in events:
                if e.type == "user_message":
                    wanted[e.seq] = 2 if e.data["text"] == "double" else 1
            got = Counter(e.data["caused_by"]["seq"] for e in events if e.type == "plugin.echo")
            assert got == wanted, sid
        (status,) = HandlerRunner(store, [Echo()]).status()
        assert status.lag == 0 and not status.failing
