"""`itsm-bridge run`: the sync daemon (HTTP server, webhooks, REST API, pollers, worker).

- `context.DaemonContext`: what every part shares (settings, store, plugins, process, the
  application layer, metrics, and `wake` for the worker).
- `app`: the FastAPI application (REST API, webhook routes, health, readiness, metrics).
- `worker`: the event-driven worker that processes the inbox and advances due releases.
- `pollers`: the plugins' pollers, on the replica holding the leader lock.
- `run`: the command: logging, the threads, uvicorn, graceful shutdown.
"""
