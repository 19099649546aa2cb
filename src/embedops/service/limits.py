"""Per-key rate limits (requests and tokens per minute) through the ``limits`` library, in
memory (one process) or in Redis (shared by every instance that names the same Redis).

Every keyed response carries OpenAI's headers: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the three ``-tokens``
ones; a request over a limit gets 429 with ``Retry-After`` (seconds).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from embedops.config import Settings
from embedops.service.auth import ApiKey
from embedops.service.errors import RateLimited


@dataclass
class LimitState:
    """One key's budget after a request: limits, what remains, seconds until it refills."""

    limit_requests: int
    remaining_requests: int
    reset_requests: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens: float

    def headers(self) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers."""
        return {
            "x-ratelimit-limit-requests": str(self.limit_requests),
            "x-ratelimit-remaining-requests": str(self.remaining_requests),
            "x-ratelimit-reset-requests": duration(self.reset_requests),
            "x-ratelimit-limit-tokens": str(self.limit_tokens),
            "x-ratelimit-remaining-tokens": str(self.remaining_tokens),
            "x-ratelimit-reset-tokens": duration(self.reset_tokens),
        }


def duration(seconds: float) -> str:
    """A reset time as OpenAI writes it: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


class RateLimits:
    """Requests and tokens per minute per key, with defaults from settings.

    Args:
        settings: ``default_rpm``, ``default_tpm`` and ``redis_url`` (``None``: memory).
    """

    def __init__(self, settings: Settings) -> None:
        self.default_rpm = settings.default_rpm
        self.default_tpm = settings.default_tpm
        if settings.redis_url:
            uri = "async+" + settings.redis_url.removeprefix("async+")
            storage = storage_from_string(uri, implementation="redispy", key_prefix="embedops")
        else:
            storage = storage_from_string("async+memory://")
        self.backend = "redis" if settings.redis_url else "memory"
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    def _items(self, key: ApiKey) -> tuple[RateLimitItemPerMinute, RateLimitItemPerMinute]:
        rpm = RateLimitItemPerMinute(key.rpm or self.default_rpm, namespace="rpm")
        tpm = RateLimitItemPerMinute(key.tpm or self.default_tpm, namespace="tpm")
        return rpm, tpm

    async def hit(self, key: ApiKey, *, requests: int = 0, tokens: int = 0) -> None:
        """Take ``requests`` and ``tokens`` from ``key``'s budget.

        Raises:
            RateLimited: over a limit; nothing of that limit is taken, and the error carries
                the headers and ``Retry-After``.
        """
        rpm, tpm = self._items(key)
        over = None
        if requests and not await self._limiter.hit(rpm, key.id, cost=requests):
            over = f"requests per minute ({rpm.amount})"
        elif tokens and not await self._limiter.hit(tpm, key.id, cost=tokens):
            over = f"tokens per minute ({tpm.amount}; this request needs {tokens})"
        if over is not None:
            state = await self.state(key)
            wait = state.reset_requests if over.startswith("requests") else state.reset_tokens
            headers = state.headers() | {"retry-after": str(max(1, math.ceil(wait)))}
            raise RateLimited(
                f"rate limit reached for key {key.id}: {over}; "
                f"retry after {headers['retry-after']}s",
                headers=headers,
            )

    async def check_tokens(self, key: ApiKey) -> None:
        """Refuse work whose token cost is known only once it is done (writes) while
        ``key`` has no tokens left this minute.

        Raises:
            RateLimited: no tokens remain.
        """
        state = await self.state(key)
        if state.remaining_tokens <= 0:
            headers = state.headers() | {"retry-after": str(max(1, math.ceil(state.reset_tokens)))}
            raise RateLimited(
                f"rate limit reached for key {key.id}: tokens per minute "
                f"({state.limit_tokens}); retry after {headers['retry-after']}s",
                headers=headers,
            )

    async def charge(self, key: ApiKey, tokens: int) -> None:
        """Take ``tokens`` already spent (a write's embeddings) from ``key``'s budget, down to
        zero at most: the work is done, so it is never refused; the next request waits."""
        if tokens <= 0:
            return
        _, tpm = self._items(key)
        stats = await self._limiter.get_window_stats(tpm, key.id)
        cost = min(tokens, stats.remaining)
        if cost > 0:
            await self._limiter.hit(tpm, key.id, cost=cost)

    async def state(self, key: ApiKey) -> LimitState:
        """``key``'s budget now, without taking from it."""
        rpm, tpm = self._items(key)
        now = time.time()
        requests = await self._limiter.get_window_stats(rpm, key.id)
        tokens = await self._limiter.get_window_stats(tpm, key.id)
        return LimitState(
            limit_requests=rpm.amount,
            remaining_requests=requests.remaining,
            reset_requests=max(0.0, requests.reset_time - now),
            limit_tokens=tpm.amount,
            remaining_tokens=tokens.remaining,
            reset_tokens=max(0.0, tokens.reset_time - now),
        )
