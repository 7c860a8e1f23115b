"""The `itsm-bridge` command (DESIGN.md, "Command line").

Exit codes: 0 done, 1 the operation failed, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from itsm_bridge import __version__
from itsm_bridge.errors import ConfigError, OperationFailed, UsageError
from itsm_bridge.plugins import load_plugins
from itsm_bridge.settings import BridgeSettings, config_path, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit code 2 through `UsageError`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _settings(args: argparse.Namespace) -> BridgeSettings:
    return load_settings(args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = load_plugins(settings)
    plugins = [p.name for p in host.get_plugins() if not p.default]
    print(f"configuration {config_path(args.config)} is valid")
    print(f"  database: {redact_url(settings.database)}")
    print(f"  plugins enabled: {', '.join(plugins) or 'none (default plugins only)'}")
    print(f"  services: {', '.join(sorted(settings.services)) or 'none'}")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    host = load_plugins(_settings(args))
    infos = host.get_plugins()
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return EXIT_OK
    for info in infos:
        kind = "default" if info.default else "plugin"
        print(f"{info.name} {info.version} ({kind}, {info.module})")
        for hook in info.hooks:
            print(f"    {hook}")
    return EXIT_OK


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
    parser = _Parser(prog="itsm-bridge", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c",
        "--config",
        help="configuration file (default: $ITSM_BRIDGE_CONFIG, else config/itsm-bridge.yaml)",
    )
    parser.add_argument("--version", action="version", version=f"itsm-bridge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    check = sub.add_parser("check-config", help="validate the configuration and the plugins")
    check.set_defaults(func=cmd_check_config)

    demo = sub.add_parser("demo", help="the whole process against the local sandbox")
    demo.add_argument("--keep", action="store_true", help="keep the state in var/demo")
    demo.set_defaults(func=cmd_demo)

    plugins = sub.add_parser("plugins", help="list the loaded plugins and their hooks")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Modules that add sub-commands: each exposes `register(subparsers)`."""
    from itsm_bridge import cli_release
    from itsm_bridge import cli_sandbox as sandbox_cli

    return [cli_release.register, sandbox_cli.register, *_EXTENSIONS]


_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("alembic").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationFailed as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
