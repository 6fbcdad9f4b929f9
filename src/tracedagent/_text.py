"""Text from values that may misbehave: exceptions whose ``__str__`` raises, results past a size limit."""

from __future__ import annotations

__all__ = ["bounded", "describe_error", "safe_str"]

#: How much of an error message an event carries, in characters.
MAX_ERROR_CHARS = 4_000


def bounded(text: str, limit: int, what: str = "result") -> str:
    """``text`` cut to ``limit`` characters, saying so, so the model knows it has part of it."""
    if len(text) <= limit:
        return text
    note = f"\n[truncated: this {what} has {len(text):,} characters; the first {limit:,} are shown]"
    return text[: max(0, limit - len(note))] + note if limit > len(note) else text[:limit]


def safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception as exc:  # an object whose __str__ raises must not take the run down with it
        try:
            return f"<{type(value).__name__} whose str() raised {type(exc).__name__}>"
        except Exception:
            return "<unprintable>"


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception, even one whose ``__str__`` raises."""
    return f"{type(exc).__name__}: {safe_str(exc)}"
