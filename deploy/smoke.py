"""Smoke test of a running embedops service, for CD (``.github/workflows/cd.yml``) and by hand.

    python deploy/smoke.py http://candidate:8000 --key "$EMBEDOPS_SMOKE_KEY" [--expect-version V]

Checks, in order: ``/healthz`` answers ok; ``/readyz`` says ready (waits up to ``--wait``
seconds while the model loads); ``POST /v1/embeddings`` embeds two texts into unit vectors of
one dimension, the similar pair closer than the unrelated one when ``--semantic``;
``/metrics`` exports ``embedops_`` metrics; with ``--expect-version``, the response header
``x-embedops-model-version`` names that version. Prints one line per check; exits 0 when all
pass, 1 at the first failure. Standard library only: it runs on a bare CI runner.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("embedops.smoke")


class SmokeFailed(Exception):
    """A check failed; the message says which and what came back."""


def _request(
    url: str, *, key: str | None = None, body: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


def smoke(
    base: str,
    *,
    key: str | None,
    model: str = "all-MiniLM-L6-v2",
    expect_version: str | None = None,
    semantic: bool = False,
    wait: float = 120,
) -> list[str]:
    """Run the checks against ``base``; return one line per passed check.

    Raises:
        SmokeFailed: a check failed.
    """
    base = base.rstrip("/")
    passed: list[str] = []
    try:
        status, _, body = _request(f"{base}/healthz", timeout=5)
    except (urllib.error.URLError, OSError) as exc:
        raise SmokeFailed(f"/healthz: no answer ({exc})") from exc
    if status != 200 or json.loads(body).get("status") != "ok":
        raise SmokeFailed(f"/healthz: {status} {body[:200]!r}")
    passed.append("healthz ok")
    deadline = time.monotonic() + wait
    while True:
        status, _, body = _request(f"{base}/readyz", timeout=5)
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise SmokeFailed(f"/readyz: not ready after {wait:.0f}s: {body[:200]!r}")
        time.sleep(1)
    passed.append("readyz ready")
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "Stocks fell sharply."]
    status, headers, body = _request(
        f"{base}/v1/embeddings", key=key, body={"input": texts, "model": model}
    )
    if status != 200:
        raise SmokeFailed(f"POST /v1/embeddings: {status} {body[:300]!r}")
    vectors = [item["embedding"] for item in json.loads(body)["data"]]
    dims = {len(v) for v in vectors}
    if len(vectors) != len(texts) or len(dims) != 1:
        raise SmokeFailed(f"/v1/embeddings: {len(vectors)} vectors of dimensions {sorted(dims)}")
    norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
    if any(abs(n - 1) > 1e-3 for n in norms):
        raise SmokeFailed(f"/v1/embeddings: vectors not unit length: {norms}")
    passed.append(f"embeddings: {len(vectors)} vectors of {dims.pop()} dimensions")
    if semantic:
        close, far = _cosine(vectors[0], vectors[1]), _cosine(vectors[0], vectors[2])
        if close <= far:
            raise SmokeFailed(f"similar pair {close:.3f} not closer than unrelated {far:.3f}")
        passed.append(f"semantic: similar {close:.3f} > unrelated {far:.3f}")
    if expect_version is not None:
        got = {k.lower(): v for k, v in headers.items()}.get("x-embedops-model-version")
        if got != expect_version:
            raise SmokeFailed(f"x-embedops-model-version: {got!r}, expected {expect_version!r}")
        passed.append(f"served by {got}")
    status, _, body = _request(f"{base}/metrics", key=key, timeout=10)
    if status != 200 or b"embedops_" not in body:
        raise SmokeFailed(f"/metrics: {status}, no embedops_ metrics")
    passed.append("metrics exported")
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="Base URL of the service, e.g. http://localhost:8000")
    parser.add_argument("--key", help="API key with the embed scope (env in CI: a secret)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="Model name to request")
    parser.add_argument("--expect-version", help="Model version the responses must name")
    parser.add_argument(
        "--semantic", action="store_true", help="Check that similar texts are closer (real model)"
    )
    parser.add_argument("--wait", type=float, default=120, help="Seconds to wait for /readyz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="smoke: %(message)s")
    try:
        lines = smoke(
            args.url,
            key=args.key,
            model=args.model,
            expect_version=args.expect_version,
            semantic=args.semantic,
            wait=args.wait,
        )
    except SmokeFailed as exc:
        logger.error("FAILED: %s", exc)
        return 1
    for line in lines:
        logger.info("%s", line)
    logger.info("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
