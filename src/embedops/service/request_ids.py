"""ASGI middleware: a request id for every request, the variant headers, and the experiment
log's row for requests an experiment variant served.

Every response carries ``x-request-id`` (uuid4 hex; also ``request.state.request_id``, and
what ``POST /v1/feedback`` names). Responses of routes that embed or search carry
``x-embedops-variant`` and ``x-embedops-model-version`` (set by ``Variants.choose`` on
``request.state``; ``default`` when no experiment runs), error responses included once the
variant was chosen.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedops.service.variants import Variants


class RequestIds:
    """Adds the request id and variant headers; hands finished requests to the experiment
    log (``Variants.record``: a queue put, no I/O)."""

    def __init__(self, app: ASGIApp, variants: Callable[[], Variants | None]) -> None:
        self.app = app
        self.variants = variants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = uuid.uuid4().hex
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if "variant" in state:
                    headers.append((b"x-embedops-variant", str(state["variant"]).encode()))
                    version = str(state.get("model_version", ""))
                    headers.append((b"x-embedops-model-version", version.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            variants = self.variants()
            if variants is not None and "variant" in state:
                route = getattr(scope.get("route"), "path", "unmatched")
                variants.record(state, route, status, time.perf_counter() - started)
