"""Bearer-token authentication of the REST API (`/api/v1`, `server.token`).

The token is compared in constant time (`hmac.compare_digest`); a missing header, another
scheme or a wrong token answers 401 with `WWW-Authenticate: Bearer`. Without a configured
token every request is refused (the daemon refuses to start without one; this is the second
line of defence). Webhooks authenticate in their plugins' handlers, not here.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

scheme = HTTPBearer(
    auto_error=False,
    scheme_name="server.token",
    description="`Authorization: Bearer <server.token>`",
)


class BearerToken:
    """A FastAPI dependency that lets a request through only with the configured token."""

    def __init__(self, token: SecretStr | None) -> None:
        value = token.get_secret_value() if token is not None else ""
        self._expected = value.encode() if value else None

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(scheme)]
    ) -> None:
        """Raise 401 unless the request carries `Authorization: Bearer <server.token>`."""
        offered = credentials.credentials.encode() if credentials is not None else b""
        if self._expected is None:
            raise _unauthorized("the API is disabled: set server.token")
        if not offered or not hmac.compare_digest(offered, self._expected):
            raise _unauthorized("missing or wrong bearer token")


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": "Bearer"})
