"""A local ServiceNow instance for the demo and the integration tests.

It speaks the Table API (`/api/now/table`, `/api/now/v2/table`) and the Change Management
conflict API (`/api/sn_chg_rest/change/{sys_id}/conflict`), enforces the default change model,
keeps journal fields in `sys_journal_field`, and can be told to fail (`fail_next`).
"""

from itsm_bridge_sandbox.servicenow.server import ServiceNowSandbox

__all__ = ["ServiceNowSandbox"]
