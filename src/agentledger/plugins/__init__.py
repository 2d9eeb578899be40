"""Plugins: hooks around every write, found by entry point or named explicitly.

A plugin implements some of the hooks in `agentledger.plugins.specs` (`before_append`,
`before_state_update`, `after_append`, `session_created`, `session_finalized`,
`event_handlers`) with functions marked `@hookimpl`; an `agentledger.handlers.EventHandler`
is a plugin too (its durable handler runs right after each append). Its own data goes
under its name: `enhance` (events), `plugin_state` and `plugin_state_event` (session
metadata). It runs when a store is opened with it: `open_store(url, plugins=["redact"])`,
`agentledger --plugin redact ...`, or `AGENTLEDGER_PLUGINS=redact`. An installed package
makes its plugin available by name with an entry point in the `agentledger.plugins` group.

Example:
    >>> from agentledger import hookimpl, open_store, NewEvent
    >>> class Shout:
    ...     name = "shout"
    ...     @hookimpl
    ...     def before_append(self, events):
    ...         for i, event in enumerate(events):
    ...             if event.type == "user_message":
    ...                 events[i] = enhance(event, self.name, {"loud": True})
    >>> with open_store("memory://", plugins=[Shout()]) as store:
    ...     sid = store.create_session(app_name="demo", user_id="ada").id
    ...     event, = store.append(sid, [NewEvent(type="user_message", data={"text": "hi"})])
    ...     event.data["plugins"]
    {'shout': {'loud': True}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentledger.core.events import EventType, NewEvent
from agentledger.core.session import Session
from agentledger.plugins.host import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    PLUGINS_ENV,
    AvailablePlugin,
    PluginHost,
    available_plugins,
    load_plugin,
    plugin_names_from_environment,
    resolve_plugins,
)
from agentledger.plugins.specs import HOOK_NAMES, hookimpl, hookspec

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "HOOK_NAMES",
    "PLUGINS_ENV",
    "AvailablePlugin",
    "PluginHost",
    "available_plugins",
    "enhance",
    "hookimpl",
    "hookspec",
    "load_plugin",
    "plugin_names_from_environment",
    "plugin_state",
    "plugin_state_event",
    "resolve_plugins",
]


def enhance(event: NewEvent, plugin: str, values: Mapping[str, Any]) -> NewEvent:
    """Return a copy of `event` with `values` merged into `data["plugins"][plugin]`.

    The event's own data is not changed (events are immutable): put the result back in
    the list `before_append` received.

    Args:
        event: The event to enhance.
        plugin: The plugin's name: its key under `data["plugins"]`.
        values: JSON values to set under that key (merged over what is there).

    Returns:
        The enhanced event.
    """
    data = dict(event.data)
    found = data.get("plugins")
    plugins: dict[str, Any] = dict(found) if isinstance(found, Mapping) else {}
    mine = plugins.get(plugin)
    plugins[plugin] = {**(mine if isinstance(mine, Mapping) else {}), **values}
    data["plugins"] = plugins
    return event.model_copy(update={"data": data})


def plugin_state(session: Session, plugin: str) -> dict[str, Any]:
    """Return the plugin's own state in a session: `session.metadata["plugins"][plugin]`.

    Args:
        session: The session (any projection: `store.get_session`, the `session` a hook
            or `handle_event` receives).
        plugin: The plugin's (or event handler's) name.

    Returns:
        A copy of that dict; `{}` when the plugin has stored nothing there.
    """
    found = session.metadata.get("plugins")
    mine = found.get(plugin) if isinstance(found, Mapping) else None
    return dict(mine) if isinstance(mine, Mapping) else {}


def plugin_state_event(plugin: str, values: Mapping[str, Any]) -> NewEvent:
    """Return a `metadata_updated` event that merges `values` into the plugin's state in
    the session, `metadata["plugins"][plugin]`, leaving every other key (other plugins'
    included) as it is.

    Append it (`store.append(session_id, [event])`), or return it from an event
    handler's `handle_event` (it is then stored once, with the handler's other derived
    events).

    Args:
        plugin: The plugin's (or event handler's) name.
        values: JSON values to set; nested objects merge key by key, and a key set to
            `None` is deleted.

    Returns:
        The event (author `plugin`).

    Raises:
        InvalidEventError: `plugin` is empty or `values` is not a mapping (values that
            are not JSON are refused by the append, with the same error).
    """
    from agentledger.errors import InvalidEventError

    if not isinstance(plugin, str) or not plugin:
        raise InvalidEventError(f"a plugin's name is a non-empty string, not {plugin!r}")
    if not isinstance(values, Mapping):
        raise InvalidEventError(f"a plugin's state is an object, not {values!r}")
    return NewEvent(
        type=EventType.METADATA_UPDATED,
        author=plugin,
        data={"metadata": {"plugins": {plugin: dict(values)}}},
    )
