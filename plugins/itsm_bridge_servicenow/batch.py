"""ServiceNow's Batch API as the client uses it: many Table API creates in one request.

Shapes ("Batch API", ServiceNowDocs `markdown/api-reference/rest-apis/batch-api.md`, release
australia; the same page at docs.servicenow.com for xanadu, yokohama and zurich):

* `POST /api/now/v1/batch` ("Versioned URL: /api/now/{api_version}/batch"; only `v1` exists on
  real instances and the unversioned `/api/now/batch` answers "Requested URI does not represent
  any resource": ServiceNow community thread "Batch API doesn't work", 2023-10, and the
  `/api/now/v1/batch` URL used by ServiceNow's own PySNC, `pysnc/query.py` `BatchAPI`).
* request `{"batch_request_id": "<string>", "rest_requests": [{"id", "method", "url",
  "headers": [{"name", "value"}], "body", "exclude_response_headers"}]}`: `id`, `method` and
  `url` are required; `url` is the *relative* path with its query ("/api/now/table/task_ci?
  sysparm_fields=sys_id"); `body` is the Base64-encoded request body; `headers` apply to that
  item only (the documented example sends Content-Type and Accept application/json; PySNC
  forwards each prepared request's headers); `exclude_response_headers` (default false)
  leaves the item's headers out of the answer.
* answer 200 `{"batch_request_id", "serviced_requests": [{"id", "body" (Base64 of the item's
  response body), "status_code", "status_text", "headers": [{"name", "value"}],
  "execution_time" (ms), "error_message" and "redirect_url" when present}],
  "unserviced_requests": [...]}`. Each item carries its own status, so a failed item is a
  serviced item with a 4xx/5xx `status_code` inside a 200 answer (PySNC turns each item into
  a `requests.Response` for its usual error handling; so does `item_response` here).
  `unserviced_requests` lists the IDs of the items not processed because the batch reached a
  size limit (5 MB per item in, 10 MB per item out) or the 30-second "REST Batch API request
  timeout" quota. The client treats every item missing from `serviced_requests` as
  unserviced, whatever form the list's entries take.
* an instance without the Batch API (it came with London: "Batch API in London", ServiceNow
  community blog, 2018) answers the batch URL like any unknown path: `400 {"error":
  {"message": "Requested URI does not represent any resource", "detail": null}, "status":
  "failure"}` (as captured in gflewis/sndml3 issue #61 and the community thread above); a 404
  is treated the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import requests
from requests.structures import CaseInsensitiveDict

from itsm_bridge.http import HTTPRequestError, HTTPTransientError

BATCH_PATH = "/api/now/v1/batch"
#: Items per batch request: 100 small creates stay far below the 5 MB/10 MB item limits and
#: the 30 s transaction quota (PSSnow's `Invoke-SNOWBatch` defaults to 150).
BATCH_SIZE = 100
NO_RESOURCE = "Requested URI does not represent any resource"
JSON_HEADERS = [
    {"name": "Content-Type", "value": "application/json"},
    {"name": "Accept", "value": "application/json"},
]


def table_url(table: str, fields: Sequence[str] = ()) -> str:
    """The relative Table API URL of a create, with the client's usual parameters."""
    params = {"sysparm_exclude_reference_link": "true"}
    if fields:
        params["sysparm_fields"] = ",".join(fields)
    return f"/api/now/table/{table}?{urlencode(params)}"


def encode(payload: Any) -> str:
    """A JSON body as the Base64 text a batch item carries."""
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


def request_body(batch_id: str, method: str, url: str, payloads: Sequence[Any]) -> dict[str, Any]:
    """A batch of `method url` requests, one per payload, with ids "0", "1", ..."""
    return {
        "batch_request_id": batch_id,
        "rest_requests": [
            {
                "id": str(index),
                "method": method,
                "url": url,
                "headers": JSON_HEADERS,
                "body": encode(payload),
                # only status and body are read: the items' headers would only add weight
                "exclude_response_headers": True,
            }
            for index, payload in enumerate(payloads)
        ],
    }


def no_batch_api(response: requests.Response, message: str) -> bool:
    """True when the instance answered the batch URL as a path it does not serve."""
    return response.status_code == 404 or (
        response.status_code == 400 and message.startswith(NO_RESOURCE)
    )


def item_response(item: dict[str, Any]) -> requests.Response:
    """A serviced item as a `requests.Response`, so the client's error mapping applies to it.

    A body that is not valid Base64 becomes an empty body; a missing `status_code` becomes 0.
    `error_message` stands in for the body when the item has none.
    """
    response = requests.Response()
    try:
        response.status_code = int(item.get("status_code") or 0)
    except (TypeError, ValueError):
        response.status_code = 0
    response.reason = str(item.get("status_text") or "")
    headers = item.get("headers") or []
    response.headers = CaseInsensitiveDict(
        {
            str(h.get("name")): str(h.get("value"))
            for h in headers
            if isinstance(h, dict) and h.get("name")
        }
    )
    try:
        content = base64.b64decode(str(item.get("body") or ""), validate=False)
    except (binascii.Error, ValueError):
        content = b""
    if not content and item.get("error_message"):
        content = str(item["error_message"]).encode("utf-8")
    response._content = content
    response.encoding = "utf-8"
    return response


def serviced(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `serviced_requests` items by id."""
    items = answer.get("serviced_requests") or []
    return {str(item.get("id")): item for item in items if isinstance(item, dict)}


def created_rows(
    table: str,
    answer: dict[str, Any],
    count: int,
    error_for: Callable[[requests.Response, str], Exception],
) -> list[dict[str, Any]]:
    """The created records of a batch answer of `count` creates, or the error for its failed
    items (`error_for(response, what)` makes ServiceNow's message the error's)."""
    items = serviced(answer)
    rows: list[dict[str, Any]] = []
    errors: list[Exception] = []
    unserviced = 0
    for index in range(count):
        item = items.get(str(index))
        if item is None:  # in `unserviced_requests` (or missing from the answer altogether)
            unserviced += 1
            continue
        what = f"POST {table} (batch item {index})"
        result = item_response(item)
        if not 200 <= result.status_code < 300:
            errors.append(error_for(result, what))
            continue
        try:
            rows.append(dict(result.json()["result"]))
        except (ValueError, KeyError, TypeError):
            errors.append(HTTPRequestError(f"{what}: answer is not JSON", 502))
    if not errors and not unserviced:
        return rows
    failed = len(errors) + unserviced
    note = f"{failed} of {count} items failed, {len(rows)} created"
    if unserviced:
        errors.append(
            HTTPTransientError(
                f"POST {table} (batch): {unserviced} items not serviced "
                "(the batch reached a size or processing limit)"
            )
        )
    # a refusal that a retry cannot cure outranks a transient failure
    error = next((e for e in errors if not isinstance(e, HTTPTransientError)), errors[0])
    error.args = (f"{error.args[0]} ({note})", *error.args[1:])
    raise error
