"""Whose session: the one rule every CLI command that acts for a user applies.

A command that runs turns or loads sessions for `--user` (and `--app`) only works on that
user's sessions of that app:

- `--session ID` with `--user`/`--app` given: the session must belong to that user of that
  app, or the command is refused (`SessionAccessError`, one `error:` line, nothing read or
  written).
- `--session ID` without them: the command acts for the session's own user and app.
- In the chat, `/session load <id>` of another user's (or app's) session is refused the
  same way.
- `--any-user` (an operator's override) lifts the check: the session is used whoever it
  belongs to, and its `user:` state stays its owner's.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentledger.core.session import Session
from agentledger.errors import SessionAccessError
from agentledger.stores.base import SessionStore

__all__ = ["AnyUserOpt", "check_session_owner", "option_given", "owned_session"]

AnyUserOpt = Annotated[
    bool,
    typer.Option(
        "--any-user",
        help=(
            "Operator override: use --session (and /session load) whoever the session "
            "belongs to. Without it, a session of another user or app is refused."
        ),
    ),
]


def option_given(ctx: typer.Context, name: str) -> bool:
    """Whether the parameter `name` of the running command was given (on the command line
    or through its environment variable) rather than left at its default."""
    source = ctx.get_parameter_source(name)
    # compared by name: Typer's click (bundled or not) has the same `ParameterSource`
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def check_session_owner(
    session: Session, *, user_id: str, app_name: str, any_user: bool = False
) -> None:
    """Refuse a session that does not belong to `user_id` of `app_name`.

    Args:
        session: The session asked for.
        user_id: The user the command acts for.
        app_name: The app the command acts for.
        any_user: The operator override: accept any session.

    Raises:
        SessionAccessError: The session belongs to another user or app (and not `any_user`).
    """
    if any_user:
        return
    if (session.app_name, session.user_id) != (app_name, user_id):
        raise SessionAccessError(
            session.id, (session.app_name, session.user_id), (app_name, user_id)
        )


def owned_session(
    ctx: typer.Context,
    store: SessionStore,
    session_id: str,
    *,
    user_id: str,
    app_name: str,
    any_user: bool = False,
    user_param: str = "user",
    app_param: str = "app_name",
) -> tuple[Session, str, str]:
    """Load `--session ID` for a command acting for `--user`/`--app` (see the module docs).

    Args:
        ctx: The running command's context (to tell a given `--user` from its default).
        store: The store.
        session_id: The session asked for.
        user_id, app_name: The values of `--user` and `--app` (given or default).
        any_user: The value of `--any-user`.
        user_param, app_param: The command's parameter names of `--user` and `--app`.

    Returns:
        The session, and the user and app the command acts for: the given ones, or the
        session's own where `--user`/`--app` were not given.

    Raises:
        SessionNotFoundError: No session has this id.
        SessionAccessError: `--user`/`--app` were given and the session is not theirs.
    """
    session = store.get_session(session_id)
    user = user_id if option_given(ctx, user_param) else session.user_id
    app = app_name if option_given(ctx, app_param) else session.app_name
    check_session_owner(session, user_id=user, app_name=app, any_user=any_user)
    return session, user, app
