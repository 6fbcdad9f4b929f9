"""Resilience per tool: circuit breakers, bulkheads (backpressure) and retries.

Every call of a tool passes these layers, in this order, and each refusal names its layer:

1. **approval** (``needs_approval``, the ``approve_tool_call`` hook): status ``denied`` or a pause;
2. **circuit breaker** (:class:`CircuitBreaker`): status ``circuit_open``, refused at once;
3. **bulkhead** (:class:`Bulkhead`: ``max_concurrency``, ``max_queue``, ``queue_timeout``): status
   ``rejected`` with reason ``queue_full`` or ``queue_timeout``;
4. **timeout** (``timeout``, over all attempts): status ``timeout``;
5. **retry** (:class:`RetryPolicy`): each retry fires ``on_retry``;
6. the call itself.

The breaker records the outcome of the whole call (after retries); timeouts count as failures,
invalid arguments and refusals do not. :class:`RedisCircuitBreaker` and :class:`RedisBulkhead` share a
tool's breaker and concurrency limit between worker processes (the ``redis`` extra: ``pip install
'tracedagent[redis]'``; the redis package is imported only when one is made).
"""

from ._breaker import CircuitBreaker, CircuitState, Transition, all_breakers, reset_all
from ._bulkhead import Bulkhead
from ._redis_breaker import RedisCircuitBreaker
from ._redis_bulkhead import RedisBulkhead
from ._retry import RetryPolicy
from ._state import ToolState, tool_states

__all__ = [
    "Bulkhead",
    "CircuitBreaker",
    "CircuitState",
    "RedisBulkhead",
    "RedisCircuitBreaker",
    "RetryPolicy",
    "ToolState",
    "Transition",
    "all_breakers",
    "reset_all",
    "tool_states",
]
