"""The `release`, `sync` and `db` commands of the CLI (DESIGN.md, "Command line")."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from itsm_bridge.errors import OperationFailed
from itsm_bridge.lifecycle import TRANSITIONS
from itsm_bridge.settings import BridgeSettings, load_settings
from itsm_bridge.store import Store, open_store

if TYPE_CHECKING:
    from itsm_bridge.commands import ReleaseCommands
    from itsm_bridge.models import Release
    from itsm_bridge.plugins import PluginHost
    from itsm_bridge.process import Process


@dataclass
class Runtime:
    settings: BridgeSettings
    store: Store
    host: PluginHost
    process: Process
    commands: ReleaseCommands


def runtime(args: argparse.Namespace, *, upgrade: bool = True) -> Runtime:
    """Everything a command that runs hooks needs (plugins are imported here, not before)."""
    from itsm_bridge.commands import ReleaseCommands
    from itsm_bridge.plugins import load_plugins
    from itsm_bridge.process import Process

    settings = load_settings(args.config)
    host = load_plugins(settings)
    store = open_store(settings.database, upgrade=upgrade)
    process = Process(store, host, settings)
    return Runtime(settings, store, host, process, ReleaseCommands(process))


def open_db(args: argparse.Namespace) -> Store:
    """The store alone, for the commands that only read it (no plugin is loaded)."""
    return open_store(load_settings(args.config).database)


def resolve(store: Store, release_id: str) -> str:
    with store.begin() as tx:
        matches = tx.find_release_id(release_id)
    if not matches:
        raise OperationFailed(f"no release {release_id!r}; `itsm-bridge release list` shows them")
    if len(matches) > 1:
        raise OperationFailed(f"{release_id!r} matches several releases: {', '.join(matches)}")
    return matches[0]


def _print_release(release: Release, rt: Runtime, as_json: bool) -> None:
    from itsm_bridge.views import release_json

    if as_json:
        with rt.store.begin() as tx:
            print(json.dumps(release_json(tx, release.id), indent=2))
    else:
        print(release.id)


def cmd_create(args: argparse.Namespace) -> int:
    from itsm_bridge.commands import parse_when

    rt = runtime(args)
    release = rt.commands.create(
        args.service,
        args.version,
        name=args.name or "",
        type=args.type,
        major=args.major,
        not_before=parse_when(args.not_before),
        duration=args.duration,
        reason=args.reason or "",
    )
    _print_release(release, rt, args.json)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = open_db(args)
    with store.begin() as tx:
        rows = tx.release_summaries(state=args.state)
    if args.json:
        print(json.dumps(rows, indent=2, default=_iso))
        return 0
    print(f"{'ID':<22} {'SERVICE':<16} {'VERSION':<12} {'TYPE':<10} {'STATE':<19} CREATED")
    for r in rows:
        print(
            f"{r['id']:<22} {r['service']:<16} {r['version']:<12} {r['type']:<10} "
            f"{r['state']:<19} {r['created_at']:%Y-%m-%d %H:%M}Z"
        )
    return 0


def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else str(value)


def cmd_show(args: argparse.Namespace) -> int:
    from itsm_bridge.views import release_json, render_show

    store = open_db(args)
    release_id = resolve(store, args.id)
    with store.begin() as tx:
        data = release_json(tx, release_id)
    print(json.dumps(data, indent=2) if args.json else render_show(data))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from itsm_bridge.views import plan_lines

    rt = runtime(args, upgrade=False)
    release_id = rt.commands.resolve(args.id)
    with rt.store.begin() as tx:
        release = tx.release(release_id)
        steps = tx.steps(release_id)
        tasks = tx.tasks(release_id)
    assert release is not None
    for line in plan_lines(rt.process.env, release, steps, tasks):
        print(line)
    return 0


def cmd_task_done(args: argparse.Namespace) -> int:
    rt = runtime(args)
    rt.commands.task_done(args.id, args.task, failed=args.failed, note=args.note or "")
    print(f"task {args.task} {'failed' if args.failed else 'done'}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    rt = runtime(args)
    release = rt.commands.approve(args.id, reject=args.reject, note=args.note or "")
    print(f"release {release.id}: change {'rejected' if args.reject else 'approved'}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    rt = runtime(args)
    release = rt.commands.rollback(args.id, args.reason)
    print(f"release {release.id}: {release.state.value}, rolling back on the next cycle")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    rt = runtime(args)
    release = rt.commands.cancel(args.id, args.reason)
    print(f"release {release.id}: {release.state.value}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    rt = runtime(args)
    release = rt.commands.retry(args.id)
    print(f"release {release.id}: {release.state.value}")
    return 0


def cmd_notes(args: argparse.Namespace) -> int:
    from itsm_bridge.models import ReleaseNotes

    store = open_db(args)
    release_id = resolve(store, args.id)
    with store.begin() as tx:
        raw = tx.core_data(release_id).get("notes")
    if not raw:
        raise OperationFailed(f"release {release_id} has no notes yet (step 10 has not run)")
    notes = ReleaseNotes(**raw)
    print(notes.html if args.format == "html" else notes.markdown, end="")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    if not args.once:
        raise OperationFailed("sync runs one cycle: pass --once (the daemon is `itsm-bridge run`)")
    from itsm_bridge.intake import run_intake

    rt = runtime(args)
    intake = run_intake(rt.store, rt.host)
    advanced = rt.process.run_due()
    print(f"intake: {intake.created} new backlog item(s); advanced {len(advanced)} release(s)")
    failed = [r for r in advanced if _is_blocked(rt, r)]
    for release_id in failed:
        print(f"release {release_id} is blocked: `itsm-bridge release show {release_id}`")
    return 0


def _is_blocked(rt: Runtime, release_id: str) -> bool:
    with rt.store.begin() as tx:
        release = tx.release(release_id)
    return release is not None and release.state.value == "blocked"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    store = open_store(settings.database, upgrade=True)
    print(f"database schema is up to date ({store.dialect})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    release = sub.add_parser("release", help="create, inspect and steer releases")
    rsub = release.add_subparsers(dest="release_command", required=True)

    create = rsub.add_parser("create", help="create a release; prints its id")
    create.add_argument("--service", required=True)
    create.add_argument("--version", required=True)
    create.add_argument("--name")
    create.add_argument("--type", default="normal", choices=["normal", "standard", "emergency"])
    create.add_argument("--major", action="store_true")
    create.add_argument("--not-before", help="ISO 8601 with a zone")
    create.add_argument("--duration", help="e.g. 2h, 90m (default: policy.default_duration)")
    create.add_argument("--reason", help="required for emergency releases")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_create)

    listing = rsub.add_parser("list", help="list releases, newest first")
    listing.add_argument("--state", choices=[s.value for s in TRANSITIONS])
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)

    for name, func, text in (
        ("show", cmd_show, "steps, tasks, external records and timeline"),
        ("plan", cmd_plan, "dry run: every hook call the next steps would make"),
        ("retry", cmd_retry, "run a blocked release's failed steps again"),
    ):
        parser = rsub.add_parser(name, help=text)
        parser.add_argument("id")
        if name == "show":
            parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=func)

    done = rsub.add_parser("task-done", help="finish a manual task")
    done.add_argument("id")
    done.add_argument("task")
    done.add_argument("--failed", action="store_true")
    done.add_argument("--note")
    done.set_defaults(func=cmd_task_done)

    approve = rsub.add_parser("approve", help="manual approval, when no plugin owns approval")
    approve.add_argument("id")
    approve.add_argument("--reject", action="store_true")
    approve.add_argument("--note")
    approve.set_defaults(func=cmd_approve)

    for name, func in (("rollback", cmd_rollback), ("cancel", cmd_cancel)):
        parser = rsub.add_parser(name)
        parser.add_argument("id")
        parser.add_argument("--reason", required=True)
        parser.set_defaults(func=func)

    notes = rsub.add_parser("notes", help="print the release notes")
    notes.add_argument("id")
    notes.add_argument("--format", choices=["md", "html"], default="md")
    notes.set_defaults(func=cmd_notes)

    sync = sub.add_parser("sync", help="one cycle of every poller and due step")
    sync.add_argument("--once", action="store_true", required=True)
    sync.set_defaults(func=cmd_sync)

    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True)
    upgrade = dsub.add_parser("upgrade", help="apply pending schema migrations")
    upgrade.set_defaults(func=cmd_db_upgrade)
