"""Schemathesis hooks for Countersign's merchant API.

- Every request is signed like a merchant signs it, over the exact bytes sent (HMAC-SHA512 of
  the raw body with the API secret, lowercase hex, in `X-Processing-Signature`, next to
  `X-Processing-Key`).
- A few withdrawals and quotes are created before the run; half of the generated status,
  cancel and make-exchange requests ask about one of them instead of a random id, so those
  operations answer more than 404.
- The statuses seen per operation are printed at the end.

Loaded by `.ci/schemathesis.sh` through `SCHEMATHESIS_HOOKS`, with `CS_BASE_URL`,
`CS_API_KEY` and `CS_API_SECRET` set. Written for schemathesis 4.x (a `before_call` hook may
change the case and the keyword arguments of the request it precedes).
"""

import atexit
import collections
import hashlib
import hmac
import json
import os
import random
import threading

import requests
import schemathesis

BASE_URL = os.environ["CS_BASE_URL"]
API_KEY = os.environ["CS_API_KEY"]
API_SECRET = os.environ["CS_API_SECRET"].encode()
BTC_ADDRESS = "tb1qurv0m4ufsj8xqejvmn0y43kqew33kvqrrxswgm"


def signature(body: bytes) -> str:
    return hmac.new(API_SECRET, body, hashlib.sha512).hexdigest()


class MerchantSignature(requests.auth.AuthBase):
    """Signs the prepared request: by then its body holds the exact bytes that go out.

    Schemathesis fills the two security headers with generated values, and leaves one out on
    purpose to test that the request is refused; only the headers it sent are replaced with
    real credentials, so those cases still go out without them.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if "X-Processing-Key" in request.headers:
            request.headers["X-Processing-Key"] = API_KEY
        if "X-Processing-Signature" in request.headers:
            request.headers["X-Processing-Signature"] = signature(body)
        return request


SIGN = MerchantSignature()


def post(path: str, body: dict) -> requests.Response:
    raw = json.dumps(body).encode()
    headers = {"X-Processing-Key": API_KEY, "X-Processing-Signature": signature(raw)}
    return requests.post(BASE_URL + path, data=raw, headers=headers, timeout=10)


def seed() -> dict:
    """Withdrawals in several states (paid out, held over the limit) and a few quotes."""
    known = {"foreign_id": [], "quote_id": []}
    for i, amount in enumerate(["0.001", "0.002", "0.02", "0.03", "0.025", "0.05"]):
        foreign_id = f"st_seed_{i}"
        body = {"foreign_id": foreign_id, "currency": "BTC", "amount": amount, "address": BTC_ADDRESS}
        if post("/api/v2/withdrawal/crypto", body).status_code == 200:
            known["foreign_id"].append(foreign_id)
    for _ in range(5):
        body = {"from_coin": "EUR", "to_coin": "BTC", "request_amount": "100", "request_coin": "EUR"}
        r = post("/api/v2/exchange/create-quota", body)
        if r.status_code == 200:
            known["quote_id"].append(r.json()["quote_id"])
    if not known["foreign_id"] or not known["quote_id"]:
        raise RuntimeError(f"could not create the seed withdrawals and quotes: {known}")
    return known


KNOWN = seed()
KNOWN_FIELD = {
    "/withdrawal/status": "foreign_id",
    "/withdrawal/cancel": "foreign_id",
    "/exchange/make-exchange": "quote_id",
}
RANDOM = random.Random(os.environ.get("CS_ST_SEED", "countersign"))
LOCK = threading.Lock()
SEEN = collections.Counter()


@schemathesis.hook
def before_call(context, case, kwargs):
    kwargs["auth"] = SIGN
    field = next((f for p, f in KNOWN_FIELD.items() if case.operation.path.endswith(p)), None)
    # Only a non-empty string is replaced: a case that is invalid on purpose stays invalid.
    if field and isinstance(case.body, dict) and isinstance(case.body.get(field), str) and case.body[field]:
        with LOCK:
            if RANDOM.random() < 0.5:
                case.body[field] = RANDOM.choice(KNOWN[field])


@schemathesis.hook
def after_call(context, case, response):
    with LOCK:
        SEEN[(case.operation.method.upper(), case.operation.path, response.status_code)] += 1


@atexit.register
def report():
    if not SEEN:
        return
    by_operation = collections.defaultdict(dict)
    for (method, path, status), n in sorted(SEEN.items()):
        by_operation[f"{method} {path}"][status] = n
    print(f"\nResponses by operation ({sum(SEEN.values())} requests):")
    for operation, statuses in by_operation.items():
        shown = ", ".join(f"{status}: {n}" for status, n in statuses.items())
        print(f"  {operation:40} {shown}")
