"""The check webhook handlers share: `Authorization: Bearer <token>` against a configured
secret, compared in constant time (`hmac.compare_digest`)."""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from itsm_bridge.errors import WebhookRejected


def bearer_token(headers: dict[str, str]) -> str:
    """The credentials of `Authorization: Bearer <credentials>` ("" without one)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    scheme, _, credentials = (lowered.get("authorization") or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def require_bearer(
    headers: dict[str, str], secret: SecretStr | None, system: str, key: str, hint: str = ""
) -> None:
    """Raise `WebhookRejected(401)` unless the request carries the secret as its bearer
    token; also when no secret is configured (`key` names the setting that enables them)."""
    if secret is None or not secret.get_secret_value():
        raise WebhookRejected(401, f"webhooks from {system} are disabled: set {key}")
    offered = bearer_token(headers).encode()
    if not hmac.compare_digest(offered, secret.get_secret_value().encode()):
        raise WebhookRejected(401, "missing or wrong bearer token" + (f" ({hint})" if hint else ""))
