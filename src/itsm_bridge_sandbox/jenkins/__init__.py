"""The Jenkins sandbox: an in-memory Jenkins remote access API for the demo and the tests."""

from itsm_bridge_sandbox.jenkins.server import JenkinsSandbox

__all__ = ["JenkinsSandbox"]
