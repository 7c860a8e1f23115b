"""The plugin manager: default plugins, entry points, the enable list, tracing, listing.

Loading order: the default (fallback, `trylast`) plugins shipped in
`itsm_bridge.default_plugins`, then every plugin registered under the `itsm_bridge` entry-point
group (first-party plugins are registered there exactly as a third party registers theirs),
keeping only those named in `plugins.enabled`.

A plugin object is either a module of `@hookimpl` functions or a class. A class is built as
`cls(config, settings)`: `config` is its section `plugins.<name>` validated by the class's
own `Settings` model (a pydantic model with `extra="forbid"`), `settings` the whole
`BridgeSettings`.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from itsm_bridge import __version__, hookspecs
from itsm_bridge.errors import ConfigError
from itsm_bridge.settings import BridgeSettings, format_validation_error

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "itsm_bridge"
TRACE_ENV = "ITSM_BRIDGE_TRACE"
DEFAULT_PLUGINS = (
    "itsm_bridge.default_plugins.calendar",
    "itsm_bridge.default_plugins.tasks",
    "itsm_bridge.default_plugins.approval",
    "itsm_bridge.default_plugins.notes",
    "itsm_bridge.default_plugins.notify_log",
    "itsm_bridge.default_plugins.postmortem",
)


@dataclass
class PluginInfo:
    """What `itsm-bridge plugins` reports for one plugin."""

    name: str
    version: str
    module: str
    default: bool
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "default": self.default,
            "hooks": self.hooks,
        }


class PluginHost:
    """The loaded plugins: `host.hook.<name>(...)` calls a hook on every one of them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def register(
        self, plugin: object, name: str, *, version: str, module: str, default: bool = False
    ) -> None:
        self.pm.register(plugin, name=name)
        self._info[name] = PluginInfo(name, version, module, default)

    def get_plugins(self) -> list[PluginInfo]:
        """Every registered plugin with the hooks it implements, defaults first."""
        infos = []
        for name, info in self._info.items():
            plugin = self.pm.get_plugin(name)
            callers = self.pm.get_hookcallers(plugin) or []
            info.hooks = sorted(caller.name for caller in callers)
            infos.append(info)
        return infos

    def plugin(self, name: str) -> object | None:
        return self.pm.get_plugin(name)

    def implementers(self, hook: str, *, defaults: bool = False) -> list[str]:
        """Names of the plugins implementing `hook` (without the defaults unless asked)."""
        caller = getattr(self.pm.hook, hook)
        names = [self.pm.get_name(impl.plugin) or "" for impl in caller.get_hookimpls()]
        return [n for n in names if defaults or not n.startswith("default.")]

    def call_one(self, hook: str, plugin: str, **kwargs: Any) -> list[Any]:
        """Call a broadcast hook on one plugin only (its non-None answers, as pluggy gives)."""
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin]
        result: list[Any] = self.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        return result


def build(plugin_object: object, name: str, settings: BridgeSettings) -> object:
    """Instantiate a plugin class with its validated settings; a module is used as it is."""
    if isinstance(plugin_object, ModuleType):
        return plugin_object
    if not isinstance(plugin_object, type):
        return plugin_object
    model: type[BaseModel] | None = getattr(plugin_object, "Settings", None)
    config: BaseModel | None = None
    if model is not None:
        try:
            config = model.model_validate(settings.plugins.section(name))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"plugins.{name}")) from None
    return plugin_object(config, settings)


def available_entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed plugins by name (the `itsm_bridge` entry-point group)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_plugins(
    settings: BridgeSettings,
    *,
    entry_points: dict[str, metadata.EntryPoint] | None = None,
    defaults: tuple[str, ...] = DEFAULT_PLUGINS,
) -> PluginHost:
    """Load defaults and the enabled entry-point plugins; `ConfigError` on any problem."""
    host = PluginHost()
    for module_name in defaults:
        module = importlib.import_module(module_name)
        name = "default." + module_name.rsplit(".", 1)[-1]
        host.register(
            build(getattr(module, "plugin", module), name, settings),
            name,
            version=__version__,
            module=module_name,
            default=True,
        )

    available = available_entry_points() if entry_points is None else entry_points
    choices = ", ".join(sorted(available)) or "none installed"
    for name in settings.plugins.enabled:
        if name not in available:
            raise ConfigError(
                f"plugins.enabled: no plugin named {name!r} is installed; available: {choices}"
            )
    for name in settings.plugins.sections():
        if name not in available:
            raise ConfigError(
                f"plugins.{name}: no plugin named {name!r} is installed; remove the section "
                f"or install the plugin (available: {choices})"
            )
    if len(set(settings.plugins.enabled)) != len(settings.plugins.enabled):
        raise ConfigError("plugins.enabled: a plugin is listed twice; list each once")

    for name in settings.plugins.enabled:
        entry_point = available[name]
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise ConfigError(
                f"plugins.enabled: plugin {name!r} ({entry_point.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        dist = entry_point.dist
        host.register(
            build(loaded, name, settings),
            name,
            version=dist.version if dist is not None else "unknown",
            module=entry_point.value,
        )

    try:
        host.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(
            f"plugin {exc.plugin!r} implements a hook that does not exist: {exc}; "
            "check the spelling against itsm_bridge.hookspecs"
        ) from None

    if os.environ.get(TRACE_ENV):
        host.pm.trace.root.setwriter(log.debug)
        host.pm.enable_tracing()
    return host
