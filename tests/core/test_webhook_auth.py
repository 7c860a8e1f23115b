"""The bearer check webhook handlers share: only the configured token passes; without a
configured token every delivery is refused and the message names the setting."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from itsm_bridge.errors import WebhookRejected
from itsm_bridge.webhook_auth import bearer_token, require_bearer

SECRET = SecretStr("s3cret-token")


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer  abc "}, "abc"),
        ({"AUTHORIZATION": "BEARER abc"}, "abc"),
        ({"Authorization": "Basic abc"}, ""),
        ({"Authorization": "abc"}, ""),
        ({}, ""),
    ],
)
def test_the_bearer_token_of_a_request(headers: dict[str, str], token: str) -> None:
    assert bearer_token(headers) == token


def test_only_the_configured_token_passes() -> None:
    require_bearer({"Authorization": "Bearer s3cret-token"}, SECRET, "Tool", "plugins.tool.t")
    for headers in ({}, {"Authorization": "Bearer s3cret-tokem"}, {"Authorization": "Bearer "}):
        with pytest.raises(WebhookRejected) as refused:
            require_bearer(headers, SECRET, "Tool", "plugins.tool.t", hint="where it is set")
        assert refused.value.status == 401
        assert refused.value.reason == "missing or wrong bearer token (where it is set)"
        assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("secret", [None, SecretStr("")])
def test_without_a_configured_token_every_delivery_is_refused(secret: SecretStr | None) -> None:
    with pytest.raises(WebhookRejected) as refused:
        require_bearer({"Authorization": "Bearer "}, secret, "Tool", "plugins.tool.t")
    assert refused.value.status == 401
    assert refused.value.reason == "webhooks from Tool are disabled: set plugins.tool.t"
