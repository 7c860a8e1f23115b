"""The Jira sandbox: a local, in-memory Jira speaking REST v2/v3, Agile 1.0 and webhooks."""

from itsm_bridge_sandbox.jira.server import JiraSandbox

__all__ = ["JiraSandbox"]
