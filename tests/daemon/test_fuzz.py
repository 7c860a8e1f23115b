"""The OpenAPI document drives a fuzz test (schemathesis): for inputs it generates from the
schema, valid or not, every route answers without a server error, with a documented status
and content type, and with a body that matches the documented response model; the API's
routes refuse requests without the token.

The app is made when the module is imported: schemathesis 4.32's fixture loader
(`schemathesis.pytest.from_fixture`) reads `Function._nodeid`, which pytest 9 no longer has.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from daemon.app_harness import AppHarness

EXAMPLES = 20  # per operation: enough to reach every error path, cheap enough for CI

_workdir = tempfile.TemporaryDirectory(prefix="itsm-bridge-fuzz-")  # removed at exit
harness = AppHarness(Path(_workdir.name))
harness.create("1.0.0")  # one release, so that lists are not empty
schema = schemathesis.openapi.from_asgi("/openapi.json", harness.app)


@schema.auth()
class BearerToken:
    """The API's token, so the generated requests get past it (and `ignored_auth` checks
    that requests without it are refused)."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return harness.auth["Authorization"]

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_as_documented(case: schemathesis.Case) -> None:
    # Valid input may still be refused: a service that is not configured (422), a release in
    # another state (409). The schema cannot say which; every other check applies.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
