"""Context compaction: keep a long conversation within a token budget.

Before each model call the agent's strategy may shorten the history. Two strategies ship:

* :class:`DropOldest` drops the oldest messages until the history fits;
* :class:`Summarize` replaces the oldest part with a summary written by the model (that call is a
  traced model call with ``purpose="compaction"``).

Both work on *units*: an assistant message that calls tools together with its tool results is one unit,
so a tool call is never separated from its result. Leading system messages are always kept, and so are
the agent's instructions, which are sent apart from the history.

Token counting is pluggable (:class:`TokenCounter`); the default, :class:`CharEstimate`, is a cheap
estimate of four characters per token and says so (``estimated=True`` on the event).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._messages import Message
from .exceptions import ConfigurationError

__all__ = [
    "CharEstimate",
    "CompactionContext",
    "CompactionStrategy",
    "DropOldest",
    "Summarize",
    "TokenCounter",
]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of messages. ``estimated`` says whether the count is exact."""

    estimated: bool

    def count(self, messages: Sequence[Message]) -> int: ...


class CharEstimate:
    """About ``chars_per_token`` characters per token plus a few tokens per message: cheap, approximate."""

    estimated = True

    def __init__(self, chars_per_token: float = 4.0, per_message: int = 4) -> None:
        if not chars_per_token > 0:
            raise ConfigurationError(f"chars_per_token must be positive, not {chars_per_token!r}")
        self.chars_per_token = chars_per_token
        self.per_message = per_message

    def count(self, messages: Sequence[Message]) -> int:
        chars = 0
        for m in messages:
            chars += len(m.content or "")
            for call in m.tool_calls:
                chars += len(call.name) + len(call.arguments)
        return int(chars / self.chars_per_token) + self.per_message * len(messages)


@dataclass(frozen=True, slots=True)
class CompactionContext:
    """What a strategy may use: the token counter and a way to have the model summarise messages."""

    counter: TokenCounter
    summarize: Callable[[Sequence[Message], str], Awaitable[str]]


@runtime_checkable
class CompactionStrategy(Protocol):
    """Shortens the history before a model call. Returns the new history, or ``None`` to keep it."""

    name: str
    counter: TokenCounter

    async def compact(self, messages: list[Message], context: CompactionContext) -> list[Message] | None: ...


def split_units(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """Leading system messages, and the rest grouped so tool calls stay with their results."""
    head = 0
    while head < len(messages) and messages[head].role == "system":
        head += 1
    units: list[list[Message]] = []
    for message in messages[head:]:
        if message.role == "tool" and units and (units[-1][0].tool_calls or units[-1][0].role == "tool"):
            units[-1].append(message)
        else:
            units.append([message])
    return list(messages[:head]), units


def _check_budget(max_tokens: int) -> None:
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ConfigurationError(f"max_tokens must be a positive integer, not {max_tokens!r}")


class DropOldest:
    """Drop the oldest messages until the history fits ``max_tokens``; the latest unit always stays."""

    name = "drop_oldest"

    def __init__(self, max_tokens: int, *, counter: TokenCounter | None = None) -> None:
        _check_budget(max_tokens)
        self.max_tokens = max_tokens
        self.counter: TokenCounter = counter or CharEstimate()

    async def compact(self, messages: list[Message], context: CompactionContext) -> list[Message] | None:
        if self.counter.count(messages) <= self.max_tokens:
            return None
        head, units = split_units(messages)
        budget = self.max_tokens - self.counter.count(head)
        kept: list[list[Message]] = []
        for unit in reversed(units):
            cost = self.counter.count(unit)
            if kept and cost > budget:
                break
            kept.append(unit)
            budget -= cost
        kept.reverse()
        compacted = head + [m for unit in kept for m in unit]
        # Counts need not add up (CharEstimate rounds per call): check the whole and drop more if needed.
        while len(kept) > 1 and self.counter.count(compacted) > self.max_tokens:
            del compacted[len(head) : len(head) + len(kept.pop(0))]
        if len(kept) == len(units):
            return None
        return compacted


SUMMARY_PROMPT = (
    "Summarise the conversation below for your own later use. Keep every fact, decision, tool result "
    "and open question that may matter; drop pleasantries. Answer with the summary only."
)
SUMMARY_PREFIX = "[Summary of the earlier conversation]\n"


class Summarize:
    """Replace the oldest part of the history with a summary written by the model.

    When the history passes ``max_tokens``, the most recent units up to ``keep_recent_tokens`` (half the
    budget by default) stay as they are and everything older is summarised into one message.
    """

    name = "summarize"

    def __init__(
        self,
        max_tokens: int,
        *,
        keep_recent_tokens: int | None = None,
        prompt: str = SUMMARY_PROMPT,
        counter: TokenCounter | None = None,
    ) -> None:
        _check_budget(max_tokens)
        self.max_tokens = max_tokens
        self.keep_recent_tokens = keep_recent_tokens if keep_recent_tokens is not None else max_tokens // 2
        if not 0 < self.keep_recent_tokens <= max_tokens:
            raise ConfigurationError(
                f"keep_recent_tokens must be between 1 and max_tokens ({max_tokens}), not {keep_recent_tokens!r}"
            )
        self.prompt = prompt
        self.counter: TokenCounter = counter or CharEstimate()

    async def compact(self, messages: list[Message], context: CompactionContext) -> list[Message] | None:
        if self.counter.count(messages) <= self.max_tokens:
            return None
        head, units = split_units(messages)
        budget = self.keep_recent_tokens
        split = len(units)
        while split > 0:
            cost = self.counter.count(units[split - 1])
            if split < len(units) and cost > budget:
                break
            budget -= cost
            split -= 1
        old = [m for unit in units[:split] for m in unit]
        if not old:
            return None
        summary = await context.summarize(old, self.prompt)
        recent = [m for unit in units[split:] for m in unit]
        return [*head, Message.user(SUMMARY_PREFIX + summary), *recent]
