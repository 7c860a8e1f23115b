"""Step 8: the CIs a release affects and the services it impacts, from the CMDB.

The walk starts at the service's CI (`services.<name>.ci`, a CI name or sys_id) and follows
`cmdb_rel_ci` rows in both directions, breadth first, for the configured relationship types
(`relationship_types`, names of `cmdb_rel_type` rows such as "Depends on::Used by") up to
`cmdb_depth` levels. Every level costs one request per direction per chunk of
`IN_CHUNK` sys_ids (never one request per CI); a visited set makes cycles harmless.

ServiceNow shapes used (Table API, `sysparm_fields` and `sysparm_exclude_reference_link=true`
on every read, so references arrive as plain sys_ids):

* `cmdb_rel_ci`: `parent`, `child`, `type` (reference to `cmdb_rel_type`, whose `name` is
  "<parent descriptor>::<child descriptor>"). In "[Server1] [Managed by] [Server2]" Server1
  is the child and Server2 the parent ("CI relationships in the CMDB", ServiceNowDocs
  `markdown/servicenow-platform/configuration-management-database-cmdb/c_CIRelationships.md`).
  Conflict detection walks the same table both ways (`ChangeCollisionHelper.getCIDependencies`
  / `getCIDependants`: `child` of rows whose `parent` is the CI and vice versa; script include
  as captured in jacebenson/sndocs `sources/kingston/0/sys_script_include/`).
* `cmdb_ci`: `sys_id`, `name`, `sys_class_name`. A query on a parent class returns rows of
  every class extending it, so "is this CI a service?" is asked of the instance with a query
  on `cmdb_ci_service` (business, technical, application/discovered, calculated, dynamic
  and tag-based services and `service_offering` all extend it) instead of a class list.
* `task_ci` (Affected CIs): `task`, `ci_item` -- the shape `ChangeCollisionHelper.
  addCiToChangeAffectedCis` writes. `task_cmdb_ci_service` (Impacted Services/CIs): `task`,
  `cmdb_ci_service`, `manually_added`. "Refresh impacted services" (run by conflict detection
  when `change.conflict.populateimpactedcis` is on, when a change leaves New, or by hand)
  recomputes that list and *removes rows whose `manually_added` is false* ("Refresh impacted
  services and CIs for Change", ServiceNowDocs `markdown/it-service-management/
  change-management/refresh-impacted-services-cis.md`), so the bridge writes
  `manually_added=true`; rows the instance adds itself are found by the look-before-create.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from itsm_bridge.errors import NeedsHuman
from itsm_bridge.models import ConfigurationItem, Impact, Release
from itsm_bridge.settings import BridgeSettings
from itsm_bridge_servicenow.client import Record, ServiceNowClient, reference
from itsm_bridge_servicenow.encoded import any_of, by_name_or_sys_id

if TYPE_CHECKING:
    from itsm_bridge_servicenow import Settings

log = logging.getLogger(__name__)

SYSTEM = "servicenow"
#: sys_ids per `IN` list: 100 x 33 characters keeps each URL near 3.5 kB.
IN_CHUNK = 100
CI_FIELDS = ("sys_id", "name", "sys_class_name")
SERVICE_TABLE = "cmdb_ci_service"


def chunked(values: Sequence[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    """Consecutive slices of at most `size` values (for `IN` lists of bounded length)."""
    for index in range(0, len(values), size):
        yield list(values[index : index + size])


def query_in(
    client: ServiceNowClient,
    table: str,
    field: str,
    values: Iterable[str],
    fields: Sequence[str],
    extra: str = "",
) -> list[Record]:
    """Rows whose `field` is one of `values`, one request (or page run) per chunk."""
    wanted = sorted({v for v in values if v})
    rows: list[Record] = []
    for chunk in chunked(wanted):
        query = f"{field}IN{','.join(chunk)}" + (f"^{extra}" if extra else "")
        rows += client.query(table, query, fields)
    return rows


def service_ci(client: ServiceNowClient, bridge: BridgeSettings, release: Release) -> Record | None:
    """The `cmdb_ci` row named by `services.<service>.ci`, or None when none is configured.

    Raises NeedsHuman when the CI does not exist or its name is ambiguous.
    """
    service = bridge.services.get(release.service)
    key = service.ci if service else None
    if not key:
        return None
    rows = client.query("cmdb_ci", by_name_or_sys_id(key), CI_FIELDS, limit=2)
    exact = [r for r in rows if r.get("sys_id") == key]
    if exact:
        return exact[0]
    if not rows:
        raise NeedsHuman(
            f"ServiceNow has no CI named {key!r} (services.{release.service}.ci): create it "
            f"in the CMDB or set services.{release.service}.ci to an existing CI name or sys_id"
        )
    if len(rows) > 1:
        raise NeedsHuman(
            f"ServiceNow has several CIs named {key!r} (services.{release.service}.ci): "
            "set it to the sys_id of the right one"
        )
    return rows[0]


def relationship_type_ids(client: ServiceNowClient, names: Sequence[str]) -> list[str]:
    """The `cmdb_rel_type` sys_ids of the configured names, in one query.

    Unknown names are logged; none known at all is a configuration problem (NeedsHuman).
    """
    if not names:
        return []
    rows = client.query("cmdb_rel_type", any_of("name", names), ("sys_id", "name"))
    found = {str(r.get("name")) for r in rows}
    missing = [n for n in names if n not in found]
    if missing:
        log.warning("servicenow: unknown relationship types ignored: %s", ", ".join(missing))
    if not rows:
        raise NeedsHuman(
            "ServiceNow knows none of plugins.servicenow.relationship_types "
            f"({', '.join(names)}): use names of cmdb_rel_type rows, e.g. 'Depends on::Used by'"
        )
    return [str(r["sys_id"]) for r in rows]


def walk(client: ServiceNowClient, start: str, type_ids: Sequence[str], depth: int) -> list[str]:
    """sys_ids reachable from `start` over `cmdb_rel_ci` (both directions), breadth first.

    The start comes first; each CI appears once however many paths reach it (cycle-safe).
    Per level: for each chunk of the frontier one query for rows whose `parent` is in it and
    one for rows whose `child` is in it, both filtered to `type_ids`.
    """
    order = [start]
    visited = {start}
    frontier = [start]
    types = "typeIN" + ",".join(type_ids) if type_ids else ""
    for _level in range(depth):
        if not frontier or not type_ids:
            break
        found: list[str] = []
        for rel in query_in(client, "cmdb_rel_ci", "parent", frontier, ("parent", "child"), types):
            found.append(reference(rel.get("child")))
        for rel in query_in(client, "cmdb_rel_ci", "child", frontier, ("parent", "child"), types):
            found.append(reference(rel.get("parent")))
        frontier = []
        for ci in found:
            if ci and ci not in visited:
                visited.add(ci)
                order.append(ci)
                frontier.append(ci)
    return order


def classify(client: ServiceNowClient, ids: Sequence[str]) -> Impact:
    """CI details for `ids` (kept in that order), split into services and other CIs."""
    details = {str(r["sys_id"]): r for r in query_in(client, "cmdb_ci", "sys_id", ids, CI_FIELDS)}
    family = query_in(client, SERVICE_TABLE, "sys_id", ids, ("sys_id",))
    services = {str(r["sys_id"]) for r in family}
    impact = Impact()
    for ci in ids:
        row = details.get(ci)
        if row is None:  # a relationship to a deleted CI
            log.warning("servicenow: cmdb_rel_ci points at missing CI %s", ci)
            continue
        item = ConfigurationItem(
            id=ci,
            name=str(row.get("name") or ci),
            cls=str(row.get("sys_class_name") or ""),
            system=SYSTEM,
        )
        (impact.services if ci in services else impact.cis).append(item)
    return impact


def identify_impact(
    client: ServiceNowClient, config: Settings, bridge: BridgeSettings, release: Release
) -> Impact | None:
    """Step 8: the affected CIs and impacted services around the release's service CI.

    None when the service has no `ci`; NeedsHuman when that CI is not in the CMDB.
    """
    root = service_ci(client, bridge, release)
    if root is None:
        return None
    start = str(root["sys_id"])
    ids = [start]
    if config.cmdb_depth > 0:
        type_ids = relationship_type_ids(client, config.relationship_types)
        ids = walk(client, start, type_ids, config.cmdb_depth)
    return classify(client, ids)


def affected_ci_ids(
    client: ServiceNowClient,
    config: Settings,
    bridge: BridgeSettings | None,
    release: Release,
) -> list[str]:
    """sys_ids whose schedules apply to the release (step 5), service CI first.

    Step 8 runs before step 5, so normally these are the ServiceNow CIs and services of
    `release.impact` (the service CI and every CI around it; no request). Without them (no
    CMDB answer yet, or one from another plugin), the service's CI (`services.<name>.ci`, a
    name or sys_id, when `bridge` is given) and its direct neighbours: conflict detection
    also checks the parents and children of every CI in scope.
    """
    items = release.impact.cis + release.impact.services if release.impact else []
    known = [ci.id for ci in items if ci.system == SYSTEM and ci.id]
    if known:
        return list(dict.fromkeys(known))
    root = service_ci(client, bridge, release) if bridge is not None else None
    if root is None:
        log.warning(
            "servicenow: no CI known for release %s (no impact and no services.%s.ci): "
            "only unscoped schedules apply",
            release.id,
            release.service,
        )
        return []
    ids = [str(root["sys_id"])]
    if config.cmdb_depth > 0:
        ids = walk(client, ids[0], relationship_type_ids(client, config.relationship_types), 1)
    return list(dict.fromkeys(ids))


def link_impact(client: ServiceNowClient, change_sys_id: str, impact: Impact | None) -> None:
    """Write the impact onto a change: `task_ci` per CI, `task_cmdb_ci_service` per service.

    Reads the change's existing rows first (one query per table) and creates only the missing
    ones, so a re-run writes nothing; the creates go through `create_many` (the Batch API, a
    request per 100 rows, or one POST per row on an instance without it). A batch is never
    retried: after a failure the step's own retry comes back here and reads again first.
    Only ServiceNow items (sys_ids) are linked.
    """
    if impact is None:
        return
    cis = [ci.id for ci in impact.cis if ci.system == SYSTEM]
    services = [ci.id for ci in impact.services if ci.system == SYSTEM]
    if cis:
        have = client.query("task_ci", f"task={change_sys_id}", ("sys_id", "ci_item"))
        linked = {reference(row.get("ci_item")) for row in have}
        rows = [
            {"task": change_sys_id, "ci_item": ci} for ci in dict.fromkeys(cis) if ci not in linked
        ]
        client.create_many("task_ci", rows, ("sys_id",))
    if services:
        have = client.query(
            "task_cmdb_ci_service", f"task={change_sys_id}", ("sys_id", "cmdb_ci_service")
        )
        linked = {reference(row.get("cmdb_ci_service")) for row in have}
        rows = [
            {"task": change_sys_id, "cmdb_ci_service": service, "manually_added": "true"}
            for service in dict.fromkeys(services)
            if service not in linked
        ]
        client.create_many("task_cmdb_ci_service", rows, ("sys_id",))
