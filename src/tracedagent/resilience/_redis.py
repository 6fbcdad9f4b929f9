"""Shared state in Redis: one circuit breaker and one concurrency limit per tool across worker processes.

Install the extra (``pip install 'tracedagent[redis]'``), then give the tool a shared breaker and a
shared bulkhead::

    from tracedagent.resilience import RedisBulkhead, RedisCircuitBreaker

    @tool(
        breaker=RedisCircuitBreaker("redis://redis:6379/0", "tracedagent:breaker:search"),
        bulkhead=RedisBulkhead("redis://redis:6379/0", "tracedagent:slots:search", max_concurrency=8),
    )
    async def search(query: str) -> str: ...

Every worker that uses the same ``key`` (with the same settings) shares it. Each change of state is one
Lua script, so it happens atomically and exactly once across the workers: the worker whose script made
a transition gets it back (and fires ``on_circuit_change``), the others do not.

**Time** is Redis's own clock (``TIME`` inside the scripts), which every worker agrees on; a breaker's
``clock`` can be injected for tests. **Connections**: given a URL, each event loop gets its own client
(``run_sync`` makes a new loop per run), with a 1-second connect timeout, a 2-second read timeout and one
quick retry, so that an outage costs each call at most a few seconds (the URL can set ``socket_timeout``
and ``socket_connect_timeout``); a ``redis.asyncio.Redis`` client you pass is used as is, on the event
loop it belongs to. ``await x.aclose()`` closes the client made for the running loop.

**When Redis cannot be reached** (connection refused, a timeout, any Redis error) the call is refused,
not let through: a limit that cannot be counted cannot be honoured, and a tool's calls should not pile
onto a resource whose limit is shared with other workers. The breaker refuses with :class:`CircuitOpen`
(status ``circuit_open``), the bulkhead with :class:`BackpressureRejected` (status ``rejected``, reason
``redis_unavailable``); both messages name Redis and its address. Ends of calls (recording an outcome,
giving a slot back) never raise: the run keeps the tool's result, a warning is logged once per outage,
and what was held in Redis expires on its own (slots after ``lease_seconds``, probes after
``probe_lease``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__: list[str] = []  # the classes are in _redis_breaker and _redis_bulkhead; this is what they share

logger = logging.getLogger("tracedagent")

_TIMEOUT_S = 2.0  # read timeout of the clients made from a URL
_CONNECT_TIMEOUT_S = 1.0

# ARGV[1] is the time: '' for Redis's own clock, or the seconds of an injected clock.
NOW = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: a zset; ARGV: a member. Gives back a probe or a slot.
REMOVE = "return redis.call('ZREM', KEYS[1], ARGV[1])"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Connection:
    """A Redis client per event loop (made from a URL) or the given client, with the scripts registered."""

    def __init__(self, url_or_client: str | Redis, owner: str, scripts: Mapping[str, str]) -> None:
        try:
            import redis.asyncio
            import redis.exceptions
        except ImportError:  # pragma: no cover - the extra is installed in development
            raise ConfigurationError(f"{owner} needs the redis package: pip install 'tracedagent[redis]'") from None
        self._scripts = scripts
        self._lock = threading.Lock()
        self._by_loop: dict[asyncio.AbstractEventLoop, tuple[Redis, dict[str, AsyncScript]]] = {}
        self._given: tuple[Redis, dict[str, AsyncScript]] | None = None
        #: What a connection failure is (any Redis error, or the socket's).
        self.errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        if isinstance(url_or_client, str):
            parts = urlsplit(url_or_client)
            if parts.scheme not in ("redis", "rediss", "unix"):
                raise ConfigurationError(f"{owner} needs a redis://, rediss:// or unix:// URL, not {url_or_client!r}")
            self._url = url_or_client
            host = parts.hostname or ""
            self.where = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"
        elif isinstance(url_or_client, redis.asyncio.Redis):
            self._url = ""
            self._given = (url_or_client, self._register(url_or_client))
            kwargs = url_or_client.connection_pool.connection_kwargs
            self.where = str(kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}")
        else:
            raise ConfigurationError(
                f"{owner} needs a redis:// URL or a redis.asyncio.Redis client, not {url_or_client!r} "
                "(a synchronous redis.Redis cannot be awaited)"
            )

    def _register(self, client: Redis) -> dict[str, AsyncScript]:
        return {name: client.register_script(source) for name, source in self._scripts.items()}

    def _current(self) -> tuple[Redis, dict[str, AsyncScript]]:
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._by_loop.get(loop)
            if found is None:
                from redis.asyncio import Redis
                from redis.asyncio.retry import Retry
                from redis.backoff import ExponentialBackoff

                # The clients of finished loops (run_sync makes one per run) keep their loop alive: drop them.
                for old in [old for old in self._by_loop if old.is_closed()]:
                    del self._by_loop[old]
                client = Redis.from_url(
                    self._url,
                    socket_timeout=_TIMEOUT_S,
                    socket_connect_timeout=_CONNECT_TIMEOUT_S,
                    # One quick retry (a pooled connection gone stale), not redis-py's ten: while Redis is
                    # down every call waits for them.
                    retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
                )
                found = self._by_loop[loop] = (client, self._register(client))
            return found

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        """Run one of the scripts (EVALSHA, loading it first when Redis does not know it)."""
        return await self._current()[1][script](keys=keys, args=args)

    async def aclose(self) -> None:
        """Close the client made for the running event loop (a client that was given is left open)."""
        with self._lock:
            found = self._by_loop.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()


class Outage:
    """Logs a Redis failure once, until Redis answers again."""

    def __init__(self) -> None:
        self.warned = False

    def warn(self, message: str, *args: object) -> None:
        if not self.warned:
            self.warned = True
            logger.warning(message, *args)

    def over(self) -> None:
        self.warned = False
