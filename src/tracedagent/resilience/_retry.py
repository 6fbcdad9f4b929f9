"""Retries of a tool call: exponential backoff with full jitter, on tenacity.

``RetryPolicy(attempts=3)`` tries a call up to three times. ``retry_on(error) -> bool`` chooses which
failures are worth another try (by default every exception except invalid arguments, refusals and
timeouts, which another try would not fix or which the timeout layer owns). Each retry fires
``on_retry`` (kind ``tool``) with the attempt, the delay and the error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..exceptions import ApprovalRequired, ConfigurationError, ToolError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


def _default_retry_on(error: BaseException) -> bool:
    return isinstance(error, Exception) and not isinstance(error, ToolError)


class RetryPolicy:
    """How a tool call is retried."""

    def __init__(
        self,
        attempts: int = 3,
        *,
        initial_delay: float = 0.1,
        max_delay: float = 5.0,
        retry_on: Callable[[BaseException], bool] = _default_retry_on,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(f"RetryPolicy attempts must be a whole number >= 1, not {attempts!r}")
        for label, value in (("initial_delay", initial_delay), ("max_delay", max_delay)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"RetryPolicy {label} must be a positive number, not {value!r}")
        if not callable(retry_on):
            raise ConfigurationError(f"RetryPolicy retry_on must be a function of the error, not {retry_on!r}")
        self.attempts = attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.retry_on = retry_on

    @classmethod
    def of(cls, value: RetryPolicy | int | None) -> RetryPolicy | None:
        """``@tool(retries=...)``: a policy, a number of retries (``2`` means up to 3 attempts), or None."""
        if value is None or value == 0:
            return None
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return cls(attempts=value + 1)
        raise ConfigurationError(f"retries must be a whole number >= 0 or a RetryPolicy, not {value!r}")

    async def call(
        self,
        function: Callable[[], Awaitable[T]],
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> T:
        """Call ``function`` until it succeeds, the error is not worth a retry, or attempts run out."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is None or state.outcome is None:
                return
            error = state.outcome.exception()
            if error is not None:
                delay = state.next_action.sleep if state.next_action else 0.0
                on_retry(state.attempt_number, float(delay), error)

        retrying: AsyncRetrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=self.initial_delay, max=self.max_delay),
            retry=retry_if_exception(self._worth_a_retry),
            before_sleep=before_sleep,
            reraise=True,
        )
        result: Any = await retrying(function)
        return result  # type: ignore[no-any-return]

    def _worth_a_retry(self, error: BaseException) -> bool:
        # Whatever retry_on says, a cancellation (the timeout layer's, or the run's) and a request for
        # approval are never retried: they are control flow, not failures of the call.
        return isinstance(error, Exception) and not isinstance(error, ApprovalRequired) and self.retry_on(error)

    def __repr__(self) -> str:
        return f"RetryPolicy(attempts={self.attempts}, initial_delay={self.initial_delay}, max_delay={self.max_delay})"
