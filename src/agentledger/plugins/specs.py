"""The hooks a plugin may implement (pluggy hook specifications).

A plugin is any object (a module, a class instance) with functions named after these hooks
and marked with `agentledger.hookimpl`; it implements only the hooks it needs, and each
implementation may take only the arguments it uses (`def after_append(events): ...`).

The hooks run in the store layer, in the process that holds the store: every writer
(`store.append`, `SessionManager`, the runner, the CLI, `agentledger serve` for `http://`
clients) goes through them.

Order: for each hook, the implementations marked `tryfirst=True` run first, then the others
in the order their plugins were named (`plugins=["a", "b"]`: `a` first), then those marked
`trylast=True`. Hook wrappers (`wrapper=True`, `hookwrapper=True`) are not supported.

What these hooks do not promise: `after_append`, `session_created` and `session_finalized`
run once, in the writing process, after the commit; a crash between the commit and the hook
loses the call. A plugin that must handle every event exactly once (exports, derived
events) provides **durable event handlers** instead (`agentledger.handlers.EventHandler`):
either the plugin object is itself an `EventHandler`, or it implements the
`event_handlers` hook and returns some. Each handler keeps a stored position in the
store-wide feed. The store runs them right after each append commits (after the
`after_append` hooks, in the writing process; see `EventHandler.inline`), and
`agentledger handlers run --plugin NAME` catches them up with what other processes wrote
or what was written while no handler ran.

A plugin's own data has its own namespace: `data["plugins"][<name>]` in events
(`agentledger.plugins.enhance`, in `before_append`) and `metadata["plugins"][<name>]` in a
session (`agentledger.plugins.plugin_state` and `plugin_state_event`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from agentledger.core.events import Event, NewEvent
    from agentledger.core.session import Session
    from agentledger.handlers import EventHandler
    from agentledger.stores.base import SessionStore

__all__ = ["PROJECT", "HOOK_NAMES", "hookimpl", "hookspec"]

PROJECT = "agentledger"
"""The pluggy project name: markers and plugin manager are made with it."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's function as a hook implementation: `@hookimpl`, or
`@hookimpl(tryfirst=True)` / `@hookimpl(trylast=True)` to run before / after the others."""


@hookspec
def before_append(
    session: Session | None, events: list[NewEvent], store: SessionStore
) -> None:
    """Inspect, change or refuse events before they are written.

    Runs before the write transaction, once per `append` call and once per
    `create_session` (with its `session_created` event), before anything is written.

    Args:
        session: The session as last read before the write (it may change before the
            write commits); `None` when the session is being created. The store reads it
            only when some plugin's implementation takes this argument.
        events: The events about to be appended, in order. Change them in place: replace
            an item (`events[i] = event.model_copy(update={...})`, see `enhance`), remove
            or add items; the next plugin sees the changed list. On `create_session` the
            list holds one `session_created` event and must keep exactly one.
        store: The store being written.

    Raises:
        PluginRejectedError: Refuse the append: the caller gets this error, with the
            plugin's name filled in, and nothing is written. Any other exception becomes
            a `PluginError` naming the plugin; nothing is written either.
    """


@hookspec
def before_state_update(
    app_name: str, user_id: str | None, delta: dict[str, Any], store: SessionStore
) -> None:
    """Inspect, change or refuse a change of shared state made without an event
    (`update_scoped_state`: `app:`/`user:` keys), before it is written.

    Args:
        app_name: The application whose shared state changes.
        user_id: The user whose `user:` state changes; `None` for `app:` keys only.
        delta: The `app:`/`user:` keys to set (`None` deletes); change it in place.
        store: The store being written.

    Raises:
        PluginRejectedError: Refuse the change; nothing is written. Any other exception
            becomes a `PluginError` naming the plugin.
    """


@hookspec
def after_append(session: Session, events: list[Event], store: SessionStore) -> None:
    """Observe events after their append committed (in process, best effort).

    Runs after every successful `append` and `create_session`, in the writing process. An
    exception here is logged (logger `agentledger.plugins`) and never undoes or fails the
    append: the caller already has its events. It is not called again after a crash: an
    observer that must see every event reads the ledger.

    Args:
        session: The session's projection right after the append.
        events: The stored events (with `seq`, `id` and `timestamp`).
        store: The store written.
    """


@hookspec
def session_created(session: Session, store: SessionStore) -> None:
    """A session was created (after its commit, after `after_append`).

    Args:
        session: The new session (version 1).
        store: The store written.
    """


@hookspec
def session_finalized(session: Session, event: Event, store: SessionStore) -> None:
    """A session was finalized: an appended `session_finalized` event committed (after
    `after_append`).

    Args:
        session: The session's projection right after the append (final phase, outcome,
            summary).
        event: The stored `session_finalized` event.
        store: The store written.
    """


@hookspec
def event_handlers() -> list[EventHandler]:
    """Provide durable event handlers (called once, when the store is opened).

    Returns:
        `agentledger.handlers.EventHandler`s (or objects with `handler_name`,
        `handled_event_types` and `handle_event`); handler names are unique among all
        enabled plugins. The store runs those with `inline` true right after each append;
        `agentledger handlers run --plugin NAME` runs them all.

    Raises:
        Exception: Any exception (or a bad handler) makes opening the store fail with
            `ConfigurationError` naming the plugin.
    """
    raise NotImplementedError  # a specification: pluggy calls the plugins' functions


HOOK_NAMES = (
    "before_append",
    "before_state_update",
    "after_append",
    "session_created",
    "session_finalized",
    "event_handlers",
)
"""Every hook: those around one write in the order they run, then `event_handlers`."""
