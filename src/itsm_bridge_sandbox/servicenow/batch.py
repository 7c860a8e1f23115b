"""The sandbox's Batch API: `POST /api/now/v1/batch`, each item run by the sandbox's own routes.

Shapes ("Batch API", ServiceNowDocs `markdown/api-reference/rest-apis/batch-api.md`, release
australia; docs.servicenow.com has the same page for xanadu, yokohama and zurich):

* request `{"batch_request_id": "<string>", "rest_requests": [{"id", "method", "url",
  "headers": [{"name", "value"}], "body", "exclude_response_headers"}]}`; `rest_requests` and
  each item's `id`, `method` and `url` are required; `url` is relative and carries the query;
  `body` is Base64; `exclude_response_headers` defaults to false (the 2018 "Batch API in
  London" community post sends it as the string "true"/"false", so both forms are read).
* answer 200 `{"batch_request_id", "serviced_requests": [{"id", "body" (Base64),
  "status_code", "status_text", "headers": [{"name", "value"}] ([] when excluded),
  "execution_time" (ms)}], "unserviced_requests": [<ids>]}`; an item that fails is a serviced
  item with its own status, the batch is still 200.
* limits: 5 MB per item in (`glide.rest.batch.max.inputSize`) and the 30-second "REST Batch
  API request timeout" quota; on reaching one the instance cancels the transaction and lists
  the unprocessed items in `unserviced_requests`. The sandbox applies both, plus
  `item_limit` (tests: serve only that many items of a batch, the rest unserviced).
* an unknown item URL answers as the instance does for any unknown REST path: 400
  "Requested URI does not represent any resource" with `detail: null` (gflewis/sndml3 #61).

Not published, so the sandbox's own choice: the text of the 400 for a batch body without
`rest_requests` or an item without `id`/`method`/`url` ("Exception while reading request"),
the item answer for a `body` that is not Base64 (400, the Table API's bad-body error), 400
"Requested URI ..." for an absolute item URL, and items always running with the batch's
credentials (an item's own `Authorization` header is ignored).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from itsm_bridge_sandbox.webapp import HTTPError, Request, Response

MAX_INPUT_BYTES = 5 * 1024 * 1024
TIMEOUT_SECONDS = 30.0
NO_RESOURCE = "Requested URI does not represent any resource"


def sn_error_body(message: str, detail: str | None) -> dict[str, Any]:
    """ServiceNow's error body."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def no_resource() -> HTTPError:
    """The answer of an instance for a REST path it does not serve."""
    return HTTPError(400, sn_error_body(NO_RESOURCE, None))


def serve(
    request: Request,
    dispatch: Callable[[Request], Response],
    *,
    timeout: float = TIMEOUT_SECONDS,
    item_limit: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Response:
    """Run a batch request: each item through `dispatch` with the batch's credentials."""
    body = _batch_body(request)
    started = clock()
    serviced: list[dict[str, Any]] = []
    unserviced: list[str] = []
    for index, item in enumerate(body["rest_requests"]):
        over = (
            bool(unserviced)
            or (item_limit is not None and index >= item_limit)
            or clock() - started > timeout
            or len(str(item.get("body") or "")) * 3 // 4 > MAX_INPUT_BYTES
        )
        if over:  # the transaction is cancelled: this item and every later one
            unserviced.append(str(item["id"]))
            continue
        serviced.append(_run_item(item, request, dispatch))
    answer = {
        "batch_request_id": str(body.get("batch_request_id") or ""),
        "serviced_requests": serviced,
        "unserviced_requests": unserviced,
    }
    return Response(200, answer)


def _batch_body(request: Request) -> dict[str, Any]:
    invalid = HTTPError(
        400, sn_error_body("Exception while reading request", "The payload is not valid JSON.")
    )
    try:
        body = request.json()
    except HTTPError as exc:
        raise invalid from exc
    items = body.get("rest_requests") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(items, list):
        raise HTTPError(
            400, sn_error_body("Exception while reading request", "rest_requests is required")
        )
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) and item.get(key) for key in ("id", "method", "url")
        ):
            raise HTTPError(
                400,
                sn_error_body(
                    "Exception while reading request",
                    "each rest_requests item needs id, method and url",
                ),
            )
    return body


def _run_item(
    item: dict[str, Any], batch: Request, dispatch: Callable[[Request], Response]
) -> dict[str, Any]:
    began = time.perf_counter()
    response = _item_response(item, batch, dispatch)
    payload, headers = response.encoded()
    headers["Content-Length"] = str(len(payload))
    exclude = str(item.get("exclude_response_headers", False)).lower() == "true"
    return {
        "id": item["id"],
        "body": base64.b64encode(payload).decode("ascii"),
        "status_code": response.status,
        "status_text": _phrase(response.status),
        "headers": [] if exclude else [{"name": k, "value": v} for k, v in headers.items()],
        "execution_time": int((time.perf_counter() - began) * 1000),
    }


def _item_response(
    item: dict[str, Any], batch: Request, dispatch: Callable[[Request], Response]
) -> Response:
    parts = urlsplit(item["url"])
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return Response(400, sn_error_body(NO_RESOURCE, None))
    try:
        content = base64.b64decode(str(item.get("body") or ""), validate=True)
    except (binascii.Error, ValueError):
        return Response(
            400, sn_error_body("Exception while reading request", "The payload is not valid JSON.")
        )
    headers = {
        str(h["name"]).lower(): str(h.get("value", ""))
        for h in item.get("headers") or []
        if isinstance(h, dict) and h.get("name")
    }
    # the items run in the batch's session: its credentials, whatever the item's headers say
    headers.pop("authorization", None)
    for name in ("authorization", "host"):
        if batch.header(name) is not None:
            headers[name] = str(batch.header(name))
    inner = Request(
        method=str(item["method"]).upper(),
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        body=content,
        raw_query=parts.query,
    )
    response = dispatch(inner)
    if response.status == 404 and response.body == {"error": f"no route for {inner.path}"}:
        return Response(400, sn_error_body(NO_RESOURCE, None))
    return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
