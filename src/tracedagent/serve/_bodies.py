"""The request bodies the server accepts, as pydantic models: unknown fields are refused (422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._approval import Approval
from .._messages import Message, ToolCall

__all__ = ["ApprovalBody", "MessageBody", "ResumeBody", "RunBody"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallBody(_Body):
    id: str
    name: str
    arguments: str | dict[str, Any] = "{}"


class MessageBody(_Body):
    """A message of the conversation, as ``Message.to_dict()`` writes it."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCallBody] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    def to_message(self) -> Message:
        calls = tuple(ToolCall.of(c.id, c.name, c.arguments) for c in self.tool_calls)
        return Message(self.role, self.content, calls, self.tool_call_id, self.name, self.is_error)


class RunBody(_Body):
    """``POST /v1/runs``: a prompt (``input``), and maybe the conversation so far or a session."""

    input: str | list[MessageBody] | None = None
    session_id: str | None = Field(default=None, min_length=1, max_length=256)
    messages: list[MessageBody] | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something_to_answer(self) -> RunBody:
        if self.input is None and not self.messages:
            raise ValueError("give `input` (a prompt, or a list of messages) or `messages`")
        return self

    def run_input(self) -> str | list[Message]:
        if isinstance(self.input, str):
            return self.input
        return [m.to_message() for m in self.input or ()]

    def history(self) -> list[Message] | None:
        return None if self.messages is None else [m.to_message() for m in self.messages]


class ApprovalBody(_Body):
    """A decision on a call that waits for approval: ``{"approved": true}``, with edited ``arguments``
    or ``remember`` (approve the tool for the rest of the run), or ``{"approved": false, "reason": ...}``."""

    approved: bool
    reason: str | None = None
    arguments: dict[str, Any] | str | None = None
    remember: bool = False

    def to_approval(self) -> Approval:
        if self.approved:
            return Approval.allow(self.arguments, remember=self.remember)
        return Approval.deny(self.reason)


class ResumeBody(_Body):
    """``POST /v1/runs/{run_id}/resume``: decisions by call id (``true``, ``false`` or an object), and
    the results of external tool calls by call id."""

    approvals: dict[str, bool | ApprovalBody] = Field(default_factory=dict)
    results: dict[str, Any] = Field(default_factory=dict)

    def decisions(self) -> dict[str, Approval]:
        return {
            call: Approval(answer) if isinstance(answer, bool) else answer.to_approval()
            for call, answer in self.approvals.items()
        }
