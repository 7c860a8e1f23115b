"""The `itsm-bridge` command (DESIGN.md, "Command line").

Exit codes: 0 done, 1 the operation failed, 2 bad usage or bad configuration.

Expected failures (bad configuration, a refused credential, a network fault, a database that
cannot be opened, a bad URL) are one line on stderr naming the cause and the fix; `-v` adds the
traceback. Anything else is a bug: its traceback is printed always, because the run that hit it
may not be repeatable (a sync cycle has already moved on), followed by a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from itsm_bridge import __version__
from itsm_bridge.errors import (
    ConfigError,
    NeedsHuman,
    OperationFailed,
    TransientError,
    UsageError,
)
from itsm_bridge.plugins import PluginHost, available_entry_points, load_plugins
from itsm_bridge.settings import BridgeSettings, config_path, load_settings, settings_from_mapping

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 2 through `UsageError`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _settings(args: argparse.Namespace) -> BridgeSettings:
    return load_settings(args.config)


def _optional_settings(args: argparse.Namespace) -> BridgeSettings | None:
    """The configuration, or None when none was asked for and the default file is absent."""
    explicit = bool(args.config or os.environ.get("ITSM_BRIDGE_CONFIG"))
    if not explicit and not config_path(None).exists():
        return None
    return load_settings(args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = load_plugins(settings)
    plugins = [p.name for p in host.get_plugins() if not p.default]
    print(f"configuration {config_path(args.config)} is valid")
    print(f"  database: {redact_url(settings.database)}")
    print(f"  plugins enabled: {', '.join(plugins) or 'none (default plugins only)'}")
    print(f"  services: {', '.join(sorted(settings.services)) or 'none'}")
    if not args.connect:
        return EXIT_OK
    return _connect(host)


def _connect(host: PluginHost) -> int:
    """One line per system an enabled plugin reaches; exit 1 when any of them failed."""
    from itsm_bridge.connect import check_line, run_checks

    checks, unchecked = run_checks(host)
    for check in checks:
        print(check_line(check))
    for name in unchecked:
        print(f"{name}: not checked (the plugin has no connection check)")
    if not checks and not unchecked:
        print("no plugin enabled: nothing to connect to")
    return EXIT_OK if all(check.ok for check in checks) else EXIT_FAILED


def cmd_plugins(args: argparse.Namespace) -> int:
    settings = _optional_settings(args)
    if settings is None and not args.json:
        print(
            f"no configuration file ({config_path(None)}): listing what is installed",
            file=sys.stderr,
        )
    rows = installed_plugins(settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        if row["default"]:
            status = "default"
        elif row["enabled"] is None:
            status = "plugin, installed"
        else:
            status = "plugin, enabled" if row["enabled"] else "plugin, not enabled"
        print(f"{row['name']} {row['version']} ({status}, {row['module']})")
        if row.get("error"):
            print(f"    cannot be loaded: {row['error']}")
        for hook in row["hooks"]:
            print(f"    {hook}")
    return EXIT_OK


def installed_plugins(settings: BridgeSettings | None) -> list[dict[str, Any]]:
    """Every default plugin and every installed entry point, with the hooks it implements.

    `enabled` is None without a configuration, else whether `plugins.enabled` names it.
    Enabled plugins are loaded as a run would load them (their settings validated); the others
    are imported only to read which hooks they declare.
    """
    host = load_plugins(settings if settings is not None else settings_from_mapping({}))
    loaded = {info.name: info for info in host.get_plugins()}
    rows = [{**info.as_dict(), "enabled": True} for info in loaded.values() if info.default]
    for name, entry_point in sorted(available_entry_points().items()):
        if name in loaded:
            rows.append({**loaded[name].as_dict(), "enabled": True})
            continue
        dist = entry_point.dist
        row: dict[str, Any] = {
            "name": name,
            "version": dist.version if dist is not None else "unknown",
            "module": entry_point.value,
            "default": False,
            "enabled": None if settings is None else False,
            "hooks": [],
        }
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken plugin is listed, not fatal to the listing
            row["error"] = f"{type(exc).__name__}: {exc}"
        else:
            row["hooks"] = declared_hooks(host, plugin)
        rows.append(row)
    return rows


def declared_hooks(host: PluginHost, plugin: object) -> list[str]:
    """The hooks a plugin module or class marks with `@hookimpl`, without registering it."""
    return sorted(
        name
        for name in dir(plugin)
        if not name.startswith("_") and host.pm.parse_hookimpl_opts(plugin, name) is not None
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from itsm_bridge.demo import run_demo

    return run_demo(keep=args.keep)


def redact_url(url: str) -> str:
    """A database URL with its password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="itsm-bridge",
        description="Run the ITIL release-management process across Jira, ServiceNow, Jenkins "
        "and Alertmanager. Without the daemon, `itsm-bridge sync --once` run from cron drives "
        "every release. Exit codes: 0 done, 1 the operation failed, 2 bad usage or "
        "configuration.",
    )
    parser.add_argument(
        "-c",
        "--config",
        help="configuration file (default: $ITSM_BRIDGE_CONFIG, else config/itsm-bridge.yaml; "
        "start from a copy of config/itsm-bridge.example.yaml)",
    )
    parser.add_argument("--version", action="version", version=f"itsm-bridge {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages and show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    check = sub.add_parser("check-config", help="validate the configuration and the plugins")
    check.add_argument(
        "--connect",
        action="store_true",
        help="also reach every enabled system with the configured credentials (exit 1 if any "
        "fails)",
    )
    check.set_defaults(func=cmd_check_config)

    demo = sub.add_parser("demo", help="the whole process against the local sandbox")
    demo.add_argument(
        "--keep", action="store_true", help="keep the demo's database and files in var/demo"
    )
    demo.set_defaults(func=cmd_demo)

    plugins = sub.add_parser(
        "plugins",
        help="list the installed plugins and their hooks (works without a configuration)",
    )
    plugins.add_argument("--json", action="store_true", help="print the list as JSON")
    plugins.set_defaults(func=cmd_plugins)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Modules that add sub-commands: each exposes `register(subparsers)`."""
    from itsm_bridge import cli_release
    from itsm_bridge import cli_sandbox as sandbox_cli
    from itsm_bridge.daemon import run as daemon_run

    return [cli_release.register, sandbox_cli.register, daemon_run.register, *_EXTENSIONS]


_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    verbose = False
    try:
        args = parser.parse_args(argv)
        verbose = bool(args.verbose)
        _configure_logging(verbose)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:
        known = describe_failure(exc)
        if known is None:
            traceback.print_exc()
            print(
                f"error: unexpected {type(exc).__name__}: {_first_line(exc)}; this is a bug "
                "in itsm-bridge or a plugin: please report it with the traceback above",
                file=sys.stderr,
            )
            return EXIT_FAILED
        code, line = known
        if verbose:
            traceback.print_exc()
        print(line, file=sys.stderr)
        return code


def _configure_logging(verbose: bool) -> None:
    """Warnings and errors by default (the default notifications at info); -v: everything."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # the log *is* the delivery channel of the default notification plugin
        logging.getLogger("itsm_bridge.default_plugins.notify_log").setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


def describe_failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line naming the cause and the fix) for an expected failure, else None."""
    if isinstance(exc, ConfigError | UsageError):
        return EXIT_USAGE, f"error: {exc}"
    if isinstance(exc, NeedsHuman):
        return EXIT_FAILED, f"failed: {exc}"
    if isinstance(exc, TransientError):
        return EXIT_FAILED, f"failed: {exc}; a passing fault: run the command again later"
    if isinstance(exc, OperationFailed):
        return EXIT_FAILED, f"failed: {exc}"
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.RequestException):
        bad_url = (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        )
        if isinstance(exc, bad_url):
            return EXIT_USAGE, (
                f"error: bad URL: {_first_line(exc)}; check the url of the plugin's section "
                "(plugins.<name>.url), e.g. https://acme.service-now.com"
            )
        return EXIT_FAILED, (
            f"failed: network: {type(exc).__name__}: {_first_line(exc)}; check that the system "
            "is reachable from here (`itsm-bridge check-config --connect`)"
        )
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        from itsm_bridge.store.engine import database_reason

        return EXIT_FAILED, (
            f"failed: database: {database_reason(exc)}; check that the database is reachable "
            "and writable by this user"
        )
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return EXIT_FAILED, f"failed: {exc.strerror or _first_line(exc)}{where}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:300] if text else ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
