"""itsm-bridge: the ITIL release-management process across Jira, ServiceNow, Jenkins and more."""

__version__ = "0.1.0"
