"""Finding, loading and running plugins: `PluginHost`, one per open store.

Plugins are named when a store is opened (`open_store(url, plugins=[...])`, `--plugin NAME`
on the command line, `$AGENTLEDGER_PLUGINS`); a name is a built-in plugin (`redact`), the
name of an entry point in the `agentledger.plugins` group (what an installed package
declares), or `module:attribute`. Installed plugins are discovered but run only when named:
a plugin changes what is stored, so enabling one is always explicit.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from agentledger.core.events import EventType, NewEvent
from agentledger.errors import ConfigurationError, PluginError, PluginRejectedError
from agentledger.plugins import specs

if TYPE_CHECKING:
    from agentledger.core.events import Event
    from agentledger.core.session import Session
    from agentledger.handlers import EventHandler, HandlerRunner
    from agentledger.stores.base import SessionStore

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "AvailablePlugin",
    "PluginHost",
    "available_plugins",
    "load_plugin",
    "plugin_names_from_environment",
    "resolve_plugins",
]

log = logging.getLogger("agentledger.plugins")

ENTRY_POINT_GROUP = "agentledger.plugins"
"""The entry-point group installed packages declare their plugins in."""

PLUGINS_ENV = "AGENTLEDGER_PLUGINS"
"""Plugins to enable when none are named explicitly: names separated by commas or spaces."""

BUILTIN_PLUGINS: dict[str, str] = {
    "otel": "agentledger.otel:OTelExporter",
    "redact": "agentledger.plugins.redact:from_environment",
}
"""The plugins shipped with agentledger: name -> `module:factory` (called with no argument)."""


@dataclass(frozen=True, slots=True)
class AvailablePlugin:
    """A plugin that can be enabled by name.

    Attributes:
        name: The name to enable it by.
        source: `"built-in"`, or `"entry point (<distribution>)"`.
        target: What the name loads (`module:attribute`).
    """

    name: str
    source: str
    target: str


def available_plugins() -> list[AvailablePlugin]:
    """Return the built-in plugins and those installed packages declare, by name.

    A built-in name wins over an entry point of the same name.

    Returns:
        One `AvailablePlugin` per name, sorted by name. Nothing is imported.
    """
    found = {name: AvailablePlugin(name, "built-in", target) for name, target in BUILTIN_PLUGINS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            dist = ep.dist.name if ep.dist is not None else "unknown"
            found[ep.name] = AvailablePlugin(ep.name, f"entry point ({dist})", ep.value)
    return [found[name] for name in sorted(found)]


def plugin_names_from_environment() -> list[str]:
    """Return the plugin names in `$AGENTLEDGER_PLUGINS` (commas or spaces between them)."""
    raw = os.environ.get(PLUGINS_ENV, "")
    return [name for name in raw.replace(",", " ").split() if name]


def _import_target(target: str, what: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            obj = getattr(obj, part)
    except Exception as exc:  # a plugin's import may fail any way it likes
        raise ConfigurationError(f"cannot load plugin {what} ({target}): {exc}") from exc
    return obj


def _plugin_name(obj: Any) -> str:
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    handler_name = getattr(obj, "handler_name", None)  # an event handler as a plugin
    if isinstance(handler_name, str) and handler_name and not isinstance(obj, type):
        return handler_name
    if isinstance(obj, ModuleType | type):
        return obj.__name__
    return type(obj).__name__


def load_plugin(spec: Any) -> tuple[str, object]:
    """Load one plugin and give its name.

    Args:
        spec: A plugin object (a module or an instance; a class is instantiated with no
            argument), or a name: a built-in plugin (`"redact"`), an entry point of the
            `agentledger.plugins` group, or `"module:attribute"`.

    Returns:
        `(name, plugin)`. The name is the one given for a built-in or an entry point;
        otherwise the object's `name` attribute if it is a string, else its
        `handler_name` (an event handler), else its module's or class's name.

    Raises:
        ConfigurationError: An unknown name (the message lists the available ones), or a
            plugin that fails to import or to build.
    """
    name: str | None = None
    if isinstance(spec, str):
        target = BUILTIN_PLUGINS.get(spec)
        if target is not None:
            factory = _import_target(target, repr(spec))
            try:
                return spec, factory()
            except Exception as exc:
                raise ConfigurationError(f"cannot set up plugin {spec!r}: {exc}") from exc
        if ":" in spec:
            obj = _import_target(spec, repr(spec))
        else:
            matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
            if not matches:
                known = ", ".join(p.name for p in available_plugins()) or "none"
                raise ConfigurationError(
                    f"unknown plugin {spec!r}; available: {known} (or module:attribute)"
                )
            try:
                obj = matches[0].load()
            except Exception as exc:
                raise ConfigurationError(
                    f"cannot load plugin {spec!r} ({matches[0].value}): {exc}"
                ) from exc
            name = spec
    else:
        obj = spec
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigurationError(f"cannot set up plugin {spec!r}: {exc}") from exc
    return name or _plugin_name(obj), obj


@dataclass(frozen=True, slots=True)
class _Impl:
    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


def _is_handler(obj: Any) -> bool:
    """Whether a plugin object is itself a durable event handler."""
    return not isinstance(obj, type) and all(
        hasattr(obj, attr) for attr in ("handler_name", "handled_event_types", "handle_event")
    )


class PluginHost:
    """The enabled plugins of one store, and the calls of their hooks.

    Args:
        plugins: What `load_plugin` takes, in the order the plugins run (see
            `agentledger.plugins.specs` for the order with `tryfirst`/`trylast`).
        inline_handlers: Whether the plugins' durable event handlers (those whose
            `inline` is true) run right after each append, in the writing process.
            `False` leaves them all to a worker (`agentledger handlers run --follow`).

    Raises:
        ConfigurationError: A plugin cannot be loaded, two have the same name, a
            plugin's hook does not match its specification (an unknown hook name or
            argument, a hook wrapper), or its event handlers are bad (no valid name,
            types or `handle_event`; a name used twice; `event_handlers` raised).
    """

    def __init__(self, plugins: Sequence[Any], *, inline_handlers: bool = True) -> None:
        loaded = [load_plugin(spec) for spec in plugins]
        names = [name for name, _ in loaded]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigurationError(f"plugin(s) named twice: {', '.join(duplicates)}")
        self.names: tuple[str, ...] = tuple(names)
        self.plugins: dict[str, object] = dict(loaded)
        manager = pluggy.PluginManager(specs.PROJECT)
        manager.add_hookspecs(specs)
        try:
            # pluggy calls the last registered first: register in reverse so the plugins
            # run in the order they were named.
            for name, plugin in reversed(loaded):
                manager.register(plugin, name=name)
            manager.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise ConfigurationError(f"bad plugin: {exc}") from exc
        self._impls: dict[str, tuple[_Impl, ...]] = {}
        for hook_name in specs.HOOK_NAMES:
            impls = getattr(manager.hook, hook_name).get_hookimpls()
            for impl in impls:
                if impl.hookwrapper or impl.wrapper:
                    raise ConfigurationError(
                        f"plugin {impl.plugin_name!r}: hook wrappers are not supported "
                        f"({hook_name})"
                    )
            # pluggy's call order: the list reversed (tryfirst first, trylast last).
            self._impls[hook_name] = tuple(
                _Impl(impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(impls)
            )
        self._manager = manager
        self.has_before_append = bool(self._impls["before_append"])
        self.before_append_wants_session = any(
            "session" in impl.argnames for impl in self._impls["before_append"]
        )
        self.has_before_state_update = bool(self._impls["before_state_update"])
        self.handler_plugins: dict[str, list[str]] = {}
        """Plugin name -> the names of the durable event handlers it provides."""
        self.event_handlers: list[EventHandler] = self._collect_handlers(loaded)
        """The durable event handlers of all plugins, in plugin order."""
        self.inline_handlers = inline_handlers
        """Whether the handlers run right after each append (see the class docstring);
        a worker that runs them itself sets it to `False`."""
        self._runner: HandlerRunner | None = None
        self._inline_handlers = [h for h in self.event_handlers if getattr(h, "inline", True)]
        self._after_observers = any(
            self._impls[h] for h in ("after_append", "session_created", "session_finalized")
        )

    @property
    def has_after_hooks(self) -> bool:
        """Whether anything runs after a write: an after hook, or inline handlers."""
        return self._after_observers or (self.inline_handlers and bool(self._inline_handlers))

    def _collect_handlers(self, loaded: list[tuple[str, object]]) -> list[EventHandler]:
        from agentledger.handlers import check_handler

        found: list[EventHandler] = []
        by_plugin = {impl.plugin: impl for impl in self._impls["event_handlers"]}
        for name, plugin in loaded:
            provided: list[Any] = [plugin] if _is_handler(plugin) else []
            impl = by_plugin.get(name)
            if impl is not None:
                try:
                    result = impl.function()
                except Exception as exc:
                    raise ConfigurationError(
                        f"plugin {name!r}: event_handlers raised {type(exc).__name__}: {exc}"
                    ) from exc
                if not isinstance(result, list | tuple):
                    raise ConfigurationError(
                        f"plugin {name!r}: event_handlers must return a list, not {result!r}"
                    )
                provided.extend(result)
            for handler in provided:
                try:
                    found.append(check_handler(handler))
                except ConfigurationError as exc:
                    raise ConfigurationError(f"plugin {name!r}: {exc}") from exc
            if provided:
                self.handler_plugins[name] = [h.handler_name for h in provided]
        names = [h.handler_name for h in found]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"event handler(s) named twice: {', '.join(duplicates)}")
        return found

    def handler_runner(self, store: SessionStore) -> HandlerRunner:
        """The runner of the inline handlers (those whose `inline` is true) on `store`:
        made on first use, then the same one (it holds the per-handler locks that keep a
        derived event's own append from running a handler again inside itself)."""
        runner = self._runner
        if runner is None or runner.store is not store:
            from agentledger.handlers import HandlerRunner

            runner = self._runner = HandlerRunner(store, self._inline_handlers)
        return runner

    def run_inline_handlers(self, store: SessionStore) -> None:
        """Run the inline handlers once over what the feed holds past their positions (at
        most one page each; the rest waits for the next append or a worker). Never
        raises: a handler's failure is stored by the runner (and shows in
        `agentledger handlers status`), a store error is logged."""
        if not self.inline_handlers or not self._inline_handlers:
            return
        try:
            self.handler_runner(store).run_once(max_pages=1)
        except Exception:
            log.exception("inline event handlers failed; the write stands")

    def hooks_of(self, name: str) -> list[str]:
        """Return the hooks plugin `name` implements, in `specs.HOOK_NAMES` order."""
        return [h for h in specs.HOOK_NAMES if any(i.plugin == name for i in self._impls[h])]

    def run_before_append(
        self,
        session: Session | None,
        events: list[NewEvent],
        store: SessionStore,
        *,
        creating: bool,
    ) -> list[NewEvent]:
        """Run every `before_append` implementation on `events` (changed in place).

        Args:
            session: The session before the write: `None` on `create_session`, and when
                no implementation takes it (`before_append_wants_session`).
            creating: Whether the events are a new session's `session_created` event.
            events: The events to append (a list of the caller's: it is changed).
            store: The store being written.

        Returns:
            `events`, as the plugins left it.

        Raises:
            PluginRejectedError: A plugin refused the append (its name filled in).
            PluginError: A plugin raised anything else, or left something that is not a
                valid event list (not a `NewEvent`, a `session_created` added to an
                append, not exactly one `session_created` on create).
        """
        values = {"session": session, "events": events, "store": store}
        for impl in self._impls["before_append"]:
            self._call_before(impl, values, "before_append")
            self._check_events(impl.plugin, events, creating)
        return events

    def run_before_state_update(
        self, app_name: str, user_id: str | None, delta: dict[str, Any], store: SessionStore
    ) -> dict[str, Any]:
        """Run every `before_state_update` implementation on `delta` (changed in place).

        Returns:
            `delta`, as the plugins left it.

        Raises:
            PluginRejectedError: A plugin refused the change (its name filled in).
            PluginError: A plugin raised anything else, or left `delta` not a dict.
        """
        values = {"app_name": app_name, "user_id": user_id, "delta": delta, "store": store}
        for impl in self._impls["before_state_update"]:
            self._call_before(impl, values, "before_state_update")
            if not isinstance(delta, dict):
                raise PluginError(impl.plugin, "before_state_update left a delta that is not a dict")
        return delta

    @staticmethod
    def _call_before(impl: _Impl, values: dict[str, Any], hook_name: str) -> None:
        try:
            impl.function(*[values[a] for a in impl.argnames])
        except PluginRejectedError as exc:
            if not exc.plugin:
                exc.plugin = impl.plugin
                exc.args = (exc.plugin, exc.reason)
            raise
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                impl.plugin, f"{hook_name} raised {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _check_events(plugin: str, events: Any, creating: bool) -> None:
        if not isinstance(events, list) or not all(isinstance(e, NewEvent) for e in events):
            raise PluginError(plugin, "before_append left an item that is not a NewEvent")
        created = sum(e.type == EventType.SESSION_CREATED for e in events)
        if creating and (len(events) != 1 or created != 1):
            raise PluginError(
                plugin, "before_append must leave exactly one session_created event on create"
            )
        if not creating and created:
            raise PluginError(plugin, "before_append added a session_created event to an append")

    def _observe(self, hook_name: str, values: dict[str, Any]) -> None:
        for impl in self._impls[hook_name]:
            try:
                impl.function(*[values[a] for a in impl.argnames])
            except Exception:
                log.exception(
                    "plugin %r failed in %s; the write it observed stands", impl.plugin, hook_name
                )

    def run_after_append(
        self,
        session: Session,
        events: list[Event],
        store: SessionStore,
        *,
        created: bool = False,
    ) -> None:
        """Run `after_append`, then `session_created` (when `created`) and
        `session_finalized` (once per stored `session_finalized` event), then the inline
        event handlers (`run_inline_handlers`). Never raises: each failing implementation
        is logged and the next one runs."""
        self._observe("after_append", {"session": session, "events": events, "store": store})
        if created and self._impls["session_created"]:
            self._observe("session_created", {"session": session, "store": store})
        if self._impls["session_finalized"]:
            for event in events:
                if event.type == EventType.SESSION_FINALIZED:
                    self._observe(
                        "session_finalized", {"session": session, "event": event, "store": store}
                    )
        self.run_inline_handlers(store)


def resolve_plugins(
    plugins: Sequence[Any] | None, *, inline_handlers: Any = True
) -> PluginHost | None:
    """Build the `PluginHost` of a store being opened.

    Args:
        plugins: The plugins named (see `load_plugin`); `None` takes the names in
            `$AGENTLEDGER_PLUGINS`. A string is one name, or several separated by commas.

        inline_handlers: See `PluginHost`; also `"true"`/`"false"` (`"1"`/`"0"`,
            `"yes"`/`"no"`), as a URL's `?inline_handlers=false` gives it.

    Returns:
        The host, or `None` when no plugin is enabled (writes then skip every hook).

    Raises:
        ConfigurationError: `plugins` is not a list, `inline_handlers` is not a boolean,
            or see `PluginHost`.
    """
    if isinstance(inline_handlers, str):
        flag = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        inline_handlers = flag.get(inline_handlers.strip().lower(), inline_handlers)
    if not isinstance(inline_handlers, bool):
        raise ConfigurationError(f"inline_handlers must be true or false, not {inline_handlers!r}")
    if plugins is None:
        names: Sequence[Any] = plugin_names_from_environment()
    elif isinstance(plugins, str):  # a URL option: ?plugins=redact,acme
        names = [n for n in plugins.replace(",", " ").split() if n]
    elif isinstance(plugins, list | tuple):
        names = plugins
    else:
        raise ConfigurationError(f"plugins must be a list of plugins or names, not {plugins!r}")
    return PluginHost(names, inline_handlers=inline_handlers) if names else None
