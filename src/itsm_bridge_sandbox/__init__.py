"""Local servers that speak the ServiceNow, Jira and Jenkins APIs (`itsm-bridge sandbox`).

`Sandbox` holds one server of each kind, filled from one seed document whose top-level keys
`servicenow:`, `jira:` and `jenkins:` are the parts each server reads (see
config/sandbox-seed.yaml and docs/sandbox.md)::

    with Sandbox() as sandbox:           # the default seed; Sandbox(load_seed(path)) for another
        sandbox.urls["jira"]             # "http://127.0.0.1:PORT"
        sandbox.jenkins.add_job(...)     # each server keeps its own test helpers

Where the default seed comes from: `config/sandbox-seed.yaml` is the only copy in the
repository. A wheel carries it as `itsm_bridge_sandbox/default-seed.yaml` (hatchling
`force-include` in pyproject.toml), so a non-editable install finds it next to this module;
a source checkout or an editable install has no such file and reads the repository's
`config/sandbox-seed.yaml` instead.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from itsm_bridge.errors import ConfigError, OperationFailed
from itsm_bridge_sandbox.base import SandboxServer
from itsm_bridge_sandbox.jenkins import JenkinsSandbox
from itsm_bridge_sandbox.jira import JiraSandbox
from itsm_bridge_sandbox.servicenow import ServiceNowSandbox

__all__ = [
    "SYSTEMS",
    "JenkinsSandbox",
    "JiraSandbox",
    "Sandbox",
    "ServiceNowSandbox",
    "default_seed_path",
    "load_seed",
]

#: The servers, in the order they start and print their URLs.
SYSTEMS = ("servicenow", "jira", "jenkins")

#: Where a wheel carries the default seed (a copy of config/sandbox-seed.yaml).
PACKAGED_SEED = Path(__file__).with_name("default-seed.yaml")
#: The default seed in a source checkout (src/itsm_bridge_sandbox -> repository root).
SOURCE_SEED = Path(__file__).resolve().parents[2] / "config" / "sandbox-seed.yaml"


def default_seed_path() -> Path:
    """The default seed file: the packaged copy when installed, else the repository's."""
    for candidate in (PACKAGED_SEED, SOURCE_SEED):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"the default sandbox seed is missing (looked for {PACKAGED_SEED} and {SOURCE_SEED}); "
        "pass a seed file with --seed FILE"
    )


def load_seed(path: str | Path | None = None) -> dict[str, Any]:
    """Read a seed file: `{servicenow: {...}, jira: {...}, jenkins: {...}}`.

    `path` None means the default seed (`default_seed_path()`). Every key is present in the
    result (a missing or empty part becomes `{}`, a server without seeded data). A file that
    cannot be read, is not YAML, or is not shaped like a seed raises `ConfigError` naming the
    file and the problem. The parts' contents are checked when a `Sandbox` is built from them.
    """
    source = Path(path) if path is not None else default_seed_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(
            f"sandbox seed {source}: cannot read it ({reason}); pass an existing YAML file "
            "with --seed FILE"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"sandbox seed {source}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"sandbox seed {source}: not valid YAML{where}: {problem}") from exc
    return _check_shape(data, source)


def _check_shape(data: Any, source: Path | str) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"sandbox seed {source}: the document must be a mapping with the keys "
            f"{', '.join(SYSTEMS)} (found a {type(data).__name__})"
        )
    unknown = sorted(str(key) for key in data if key not in SYSTEMS)
    if unknown:
        raise ConfigError(
            f"sandbox seed {source}: unknown top-level key(s) {', '.join(unknown)}; "
            f"the keys are {', '.join(SYSTEMS)}"
        )
    seed: dict[str, Any] = {}
    for system in SYSTEMS:
        part = data.get(system)
        if part is None:
            part = {}
        if not isinstance(part, Mapping):
            raise ConfigError(
                f"sandbox seed {source}: `{system}` must be a mapping "
                f"(found a {type(part).__name__})"
            )
        seed[system] = dict(part)
    return seed


class Sandbox:
    """The three sandbox servers, built from one seed; start them together, stop them together.

    `seed` is a seed document as `load_seed` returns it (None: the default seed file);
    `source` names where it came from in error messages. A part the servers refuse (an
    unknown key, a dangling reference ...) raises `ConfigError`. Credentials are
    `sandbox`/`sandbox` unless a part sets `user`/`password` (Jenkins also `api_token`).
    """

    def __init__(
        self, seed: Mapping[str, Any] | None = None, *, source: str | Path | None = None
    ) -> None:
        if seed is None:
            source = source or default_seed_path()
            seed = load_seed(source)
        else:
            seed = _check_shape(seed, source or "<given>")
        where = source or "<given>"
        self.seed: dict[str, Any] = dict(seed)
        self.servicenow: ServiceNowSandbox = _build(
            "servicenow", where, lambda: ServiceNowSandbox(self.seed["servicenow"])
        )
        self.jira: JiraSandbox = _build("jira", where, lambda: JiraSandbox(self.seed["jira"]))
        self.jenkins: JenkinsSandbox = _build(
            "jenkins", where, lambda: JenkinsSandbox(self.seed["jenkins"])
        )
        self._urls: dict[str, str] = {}

    @property
    def servers(self) -> dict[str, SandboxServer]:
        """system -> server, in start order."""
        return {"servicenow": self.servicenow, "jira": self.jira, "jenkins": self.jenkins}

    @property
    def urls(self) -> dict[str, str]:
        """system -> base URL of the running servers (empty when stopped)."""
        return dict(self._urls)

    @property
    def running(self) -> bool:
        return bool(self._urls)

    def start(
        self, host: str = "127.0.0.1", ports: Mapping[str, int] | None = None
    ) -> dict[str, str]:
        """Serve all three on `host`; `ports` maps a system to its port (absent or 0: any
        free port). Returns system -> base URL. A port that cannot be bound raises
        `OperationFailed` and leaves nothing running."""
        if self._urls:
            raise RuntimeError("the sandbox is already started")
        ports = dict(ports or {})
        unknown = sorted(set(ports) - set(SYSTEMS))
        if unknown:
            raise ValueError(f"unknown sandbox system(s) {unknown}; known: {list(SYSTEMS)}")
        urls: dict[str, str] = {}
        try:
            for system, server in self.servers.items():
                port = int(ports.get(system) or 0)
                try:
                    urls[system] = server.start(host, port)
                except OSError as exc:
                    raise OperationFailed(_bind_failure(system, host, port, exc)) from exc
        except BaseException:
            for system in reversed(list(urls)):
                self.servers[system].stop()
            raise
        self._urls = urls
        return dict(urls)

    def stop(self) -> None:
        """Stop every running server (safe to call twice)."""
        for system in reversed(list(self._urls)):
            self.servers[system].stop()
        self._urls = {}

    def __enter__(self) -> Sandbox:
        if not self._urls:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _build(system: str, source: str | Path, make: Any) -> Any:
    try:
        return make()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"sandbox seed {source}: `{system}` part: {detail}") from exc


def _bind_failure(system: str, host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = f"port {port} is already in use"
    elif exc.errno == errno.EACCES:
        why = f"no permission to listen on port {port}"
    else:
        why = exc.strerror or str(exc)
    return (
        f"{system} sandbox cannot listen on {host}:{port}: {why}; "
        f"choose another --{system}-port (0 picks a free one)"
    )
