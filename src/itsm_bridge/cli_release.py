"""The `release`, `sync` and `db` commands of the CLI (DESIGN.md, "Command line")."""

from __future__ import annotations

import argparse
import json
import sys
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


SYNC_CURSOR = "sync.started_at"


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
    from itsm_bridge.inputs import parse_service_levels, parse_when

    levels = parse_service_levels(args.service_level or [])
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
        service_levels=levels,
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
    warning = rt.commands.task_done(args.id, args.task, failed=args.failed, note=args.note or "")
    print(f"task {args.task} {'failed' if args.failed else 'done'}")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
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


def cmd_end_support(args: argparse.Namespace) -> int:
    rt = runtime(args)
    rt.commands.end_support(args.id, note=args.note or "")
    print(f"release {args.id}: early life support ends on the next cycle")
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
    from itsm_bridge.cycle import run_cycle

    rt = runtime(args)
    # A first write: an unwritable database stops here, as one line, before the cycle starts;
    # it also records when the last cycle started.
    rt.store.check_writable(SYNC_CURSOR, rt.process.clock().isoformat())
    cycle = run_cycle(rt.process)
    print(
        f"intake: {cycle.backlog_items} new backlog item(s); "
        f"advanced {len(cycle.advanced)} release(s)"
    )
    for line in cycle.failures:
        print(line, file=sys.stderr)
    return 1 if cycle.failures else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    store = open_store(settings.database, upgrade=True)
    print(f"database schema is up to date ({store.dialect})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    release = sub.add_parser("release", help="create, inspect and steer releases")
    rsub = release.add_subparsers(dest="release_command", required=True)

    create = rsub.add_parser("create", help="create a release; prints its id")
    create.add_argument("--service", required=True, help="a service of `services` in the config")
    create.add_argument(
        "--version",
        required=True,
        help="at most 64 characters, no whitespace; must match policy.version_pattern if set",
    )
    create.add_argument("--name", help="a short title (default: none)")
    create.add_argument(
        "--type",
        default="normal",
        choices=["normal", "standard", "emergency"],
        help="the change type (default: normal)",
    )
    create.add_argument("--major", action="store_true", help="early life support after release")
    create.add_argument(
        "--not-before", metavar="ISO8601", help="earliest start, with a zone: 2026-12-05T22:00Z"
    )
    create.add_argument("--duration", help="e.g. 2h, 90m (default: policy.default_duration)")
    create.add_argument("--reason", help="why; required for emergency releases")
    create.add_argument(
        "--service-level",
        action="append",
        metavar="KEY=VALUE",
        help="a service level the release prescribes (repeatable), e.g. availability=99.95; "
        "overrides services.<name>.service_levels",
    )
    create.add_argument("--json", action="store_true", help="print the release as JSON")
    create.set_defaults(func=cmd_create)

    listing = rsub.add_parser("list", help="list releases, newest first")
    listing.add_argument(
        "--state", choices=[s.value for s in TRANSITIONS], help="only releases in this state"
    )
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(func=cmd_list)

    for name, func, text in (
        ("show", cmd_show, "steps, tasks, external records and timeline"),
        ("plan", cmd_plan, "dry run: every hook call the next steps would make"),
        (
            "retry",
            cmd_retry,
            "run a blocked release's failed steps again once the cause is fixed (a rejected "
            "change asks for approval again), or a failed rollback",
        ),
    ):
        parser = rsub.add_parser(name, help=text)
        parser.add_argument("id", help="release id, or an unambiguous prefix")
        if name == "show":
            parser.add_argument("--json", action="store_true", help="print the release as JSON")
        parser.set_defaults(func=func)

    done = rsub.add_parser("task-done", help="finish a manual task")
    done.add_argument("id", help="release id, or an unambiguous prefix")
    done.add_argument("task", help="the task key, as `release show` lists it")
    done.add_argument("--failed", action="store_true", help="the task failed")
    done.add_argument("--note", help="what was done, for the record")
    done.set_defaults(func=cmd_task_done)

    approve = rsub.add_parser(
        "approve",
        help="decide the approval a planned release waits for at step 7, when no plugin owns "
        "approval (a blocked release is resumed with `release retry`)",
    )
    approve.add_argument("id", help="release id, or an unambiguous prefix")
    approve.add_argument("--reject", action="store_true", help="reject: the release is blocked")
    approve.add_argument("--note", help="the approver's comment")
    approve.set_defaults(func=cmd_approve)

    support = rsub.add_parser(
        "end-support",
        help="end a major release's early life support now (stakeholders get the summary)",
    )
    support.add_argument("id", help="release id, or an unambiguous prefix")
    support.add_argument("--note", help="why it ends early (in the audit trail)")
    support.set_defaults(func=cmd_end_support)

    for name, func, text in (
        ("rollback", cmd_rollback, "roll a deployed release back"),
        ("cancel", cmd_cancel, "cancel a release that has not started deploying"),
    ):
        parser = rsub.add_parser(name, help=text)
        parser.add_argument("id", help="release id, or an unambiguous prefix")
        parser.add_argument("--reason", required=True, help="why, for the record")
        parser.set_defaults(func=func)

    notes = rsub.add_parser("notes", help="print the release notes")
    notes.add_argument("id", help="release id, or an unambiguous prefix")
    notes.add_argument(
        "--format", choices=["md", "html"], default="md", help="Markdown or HTML (default: md)"
    )
    notes.set_defaults(func=cmd_notes)

    sync = sub.add_parser(
        "sync",
        help="one cycle of intake and every due step, then exit; 1 when anything failed (one "
        "line per failure on stderr)",
    )
    sync.add_argument("--once", action="store_true", required=True, help="one cycle (required)")
    sync.set_defaults(func=cmd_sync)

    db = sub.add_parser("db", help="database maintenance")
    dsub = db.add_subparsers(dest="db_command", required=True)
    upgrade = dsub.add_parser(
        "upgrade", help="apply pending schema migrations (commands that write apply them too)"
    )
    upgrade.set_defaults(func=cmd_db_upgrade)
