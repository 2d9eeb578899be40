"""The CLI's `--user` is checked against the session: `run` and `chat` with `--session` of
another user's (or app's) session, and the chat's `/session load` of one, are refused with
one `error:` line and nothing appended; `--any-user` is the operator's override."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentledger import SessionAccessError, open_store
from agentledger.cli import app
from agentledger.cli.access import check_session_owner
from agentledger.demo import DEMO_APP


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture()
def alice(url: str) -> str:
    """Alice's session in the reminders app, with one reminder."""
    with open_store(url) as store:
        session = store.create_session(
            app_name=DEMO_APP, user_id="alice", state={"user:reminders": ["see the doctor"]}
        )
        return session.id


def _version(url: str, session_id: str) -> int:
    with open_store(url) as store:
        return store.get_session(session_id).version


def _invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_run_refuses_another_users_session(url: str, alice: str) -> None:
    code, out, err = _invoke("--store", url, "run", "show my reminders",
                             "--session", alice, "--user", "mallory")
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"session {alice!r} belongs to user 'alice'" in err and "'mallory'" in err
    assert "see the doctor" not in out + err
    assert _version(url, alice) == 1  # nothing appended


def test_run_refuses_a_session_of_another_app(url: str, alice: str) -> None:
    code, _, err = _invoke("--store", url, "run", "remind me to x",
                           "--session", alice, "--user", "alice", "--app", "other")
    assert code == 1 and "of app 'reminders'" in err
    assert _version(url, alice) == 1


def test_run_as_the_owner_or_without_user_works(url: str, alice: str) -> None:
    code, out, err = _invoke("--store", url, "run", "show my reminders",
                             "--session", alice, "--user", "alice")
    assert code == 0, err
    assert "see the doctor" in out
    # without --user, the command acts for the session's own user
    code, out, err = _invoke("--store", url, "run", "remind me to rest", "--session", alice)
    assert code == 0, err
    with open_store(url) as store:
        assert store.get_session(alice).state["user:reminders"] == ["see the doctor", "rest"]


def test_any_user_is_the_operators_override(url: str, alice: str) -> None:
    code, out, err = _invoke("--store", url, "run", "show my reminders",
                             "--session", alice, "--user", "mallory", "--any-user")
    assert code == 0, err
    assert "see the doctor" in out


def test_chat_refuses_another_users_session(url: str, alice: str) -> None:
    code, out, err = _invoke("--store", url, "chat", "--session", alice, "--user", "mallory",
                             stdin="remind me to steal\nquit\n")
    assert code == 1
    assert err.startswith("error: ") and "belongs to user 'alice'" in err
    assert "see the doctor" not in out
    assert _version(url, alice) == 1


def test_chat_session_load_refuses_another_users_session(url: str, alice: str) -> None:
    code, out, err = _invoke("--store", url, "chat", "--user", "mallory",
                             stdin=f"/session load {alice}\nremind me to steal\n"
                                   "/session current\nquit\n")
    assert code == 0, err
    assert f"error: session {alice!r} belongs to user 'alice'" in err  # chat errors: stderr
    assert "see the doctor" not in out
    assert _version(url, alice) == 1  # the turn went to mallory's own session
    with open_store(url) as store:
        page = store.list_sessions(user_id="mallory")
        assert [s.state["user:reminders"] for s in page.sessions] == [["steal"]]


def test_chat_session_load_with_any_user(url: str, alice: str) -> None:
    code, out, err = _invoke("--store", url, "chat", "--user", "mallory", "--any-user",
                             stdin=f"/session load {alice}\nquit\n")
    assert code == 0, err
    assert f"loaded session {alice}" in out


def test_check_session_owner(url: str, alice: str) -> None:
    with open_store(url) as store:
        session = store.get_session(alice)
    check_session_owner(session, user_id="alice", app_name=DEMO_APP)
    check_session_owner(session, user_id="bob", app_name=DEMO_APP, any_user=True)
    with pytest.raises(SessionAccessError) as info:
        check_session_owner(session, user_id="bob", app_name=DEMO_APP)
    assert info.value.owner == (DEMO_APP, "alice")
    assert info.value.requested == (DEMO_APP, "bob")
