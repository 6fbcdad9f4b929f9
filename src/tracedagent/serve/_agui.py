"""``POST /agui``: the AG-UI protocol, with the ``ag-ui-protocol`` package's types and encoder.

A request is a ``RunAgentInput``: its ``messages`` are the conversation (the last one, usually the
user's, is what the agent answers). The response is AG-UI's SSE stream: ``RUN_STARTED``, a
``STATE_SNAPSHOT`` with the run's ids under ``tracedagent``, ``REASONING_START`` /
``REASONING_MESSAGE_START`` / ``_CONTENT`` / ``_END`` / ``REASONING_END`` for the model's thinking (where
the model gives it: ``ThinkingDelta`` as it streams, ``Message.thinking`` of each model call of a
resume), ``TEXT_MESSAGE_START`` / ``_CONTENT`` / ``_END`` for the answer, ``TOOL_CALL_START`` / ``_ARGS``
/ ``_END`` and ``TOOL_CALL_RESULT`` for each tool call, a last ``STATE_SNAPSHOT`` (status, usage), then
``RUN_FINISHED`` or ``RUN_ERROR``. The thinking goes out like the answer's text: the client asked for the
run, and ``POST /v1/runs`` sends the same ``thinking_delta`` events.

A run that pauses for approval finishes with AG-UI's interrupt outcome: one ``Interrupt`` per pending
call (its ``id`` is the call id, ``metadata.run_id`` the tracedagent run). The client answers with a new
``RunAgentInput`` whose ``resume`` has an entry per interrupt: ``status`` ``resolved`` with ``payload``
``true`` / ``{"approved": bool, "reason": ...}`` (or ``{"result": ...}`` for an external tool), or
``cancelled`` (denied).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ag_ui.core import (
    Interrupt,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    StateSnapshotEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder

from .._approval import Approval
from .._events import ModelCallEnded, RunResumed, RunStarted, ToolCallEnded, ToolCallStarted
from .._messages import Message, ToolCall
from .._model import TextDelta, ThinkingDelta
from .._result import RunResult
from ._runs import Refused, ServedAgent
from ._tap import Tap
from ._wire import usage_json

__all__ = ["AguiEncoder", "agui_call", "to_messages"]


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    parts = [getattr(part, "text", None) for part in content]
    return "".join(p for p in parts if isinstance(p, str)) or None


def to_messages(agui: RunAgentInput) -> list[Message]:
    """AG-UI's messages as tracedagent's (developer is system; activity and reasoning are left out)."""
    messages: list[Message] = []
    for m in agui.messages:
        role = m.role
        if role in ("system", "developer"):
            messages.append(Message.system(_text(getattr(m, "content", None)) or ""))
        elif role == "user":
            messages.append(Message.user(_text(getattr(m, "content", None)) or ""))
        elif role == "assistant":
            calls = [
                ToolCall(c.id, c.function.name, c.function.arguments) for c in getattr(m, "tool_calls", None) or ()
            ]
            messages.append(Message.assistant(_text(getattr(m, "content", None)), calls))
        elif role == "tool":
            error = getattr(m, "error", None)
            content = _text(getattr(m, "content", None)) or error or ""
            messages.append(Message.tool(getattr(m, "tool_call_id", ""), "", content, is_error=bool(error)))
    return messages


async def agui_call(agent: ServedAgent, agui: RunAgentInput, threads: dict[str, str]) -> Any:
    """The call that runs (or, with ``resume``, continues) the agent for an AG-UI request."""
    if agui.resume:
        run_id = next(
            (str(e.metadata["run_id"]) for e in agui.resume if e.metadata and e.metadata.get("run_id")),
            threads.get(agui.thread_id),
        )
        if run_id is None:
            raise Refused(422, "bad_request", f"no paused run on thread {agui.thread_id!r} to resume")
        checkpoint = await agent.store().load(run_id)
        if checkpoint is None:
            raise Refused(404, "unknown_run", f"no run {run_id!r} to resume")
        kinds = {call.id: call.kind for call in checkpoint.pending}
        approvals: dict[str, Approval] = {}
        results: dict[str, Any] = {}
        for entry in agui.resume:
            payload = entry.payload
            if entry.status == "cancelled":
                approvals[entry.interrupt_id] = Approval.deny("cancelled by the user")
            elif kinds.get(entry.interrupt_id) == "external":
                results[entry.interrupt_id] = payload.get("result") if isinstance(payload, dict) else payload
            elif isinstance(payload, dict):
                approved = bool(payload.get("approved", True))
                approvals[entry.interrupt_id] = Approval.allow() if approved else Approval.deny(payload.get("reason"))
            else:
                approvals[entry.interrupt_id] = Approval(payload is not False)
        return lambda: agent.resume(run_id, approvals, results=results)
    messages = to_messages(agui)
    if not messages:
        raise Refused(422, "bad_request", "RunAgentInput.messages is empty: nothing to answer")
    return lambda: agent.stream(messages)


class AguiEncoder:
    """A run's events as AG-UI events, for one request."""

    def __init__(self, agui: RunAgentInput, threads: dict[str, str]) -> None:
        self.agui = agui
        self.threads = threads
        self.encoder = EventEncoder()
        self.message_id: str | None = None
        self.reasoning_id: str | None = None
        self.texted = False
        self.run_id: str | None = None
        # A new run streams its text and thinking; a resume does not (agent.resume), so its thinking is
        # taken from each model call's message as the call ends.
        self.streamed = not agui.resume

    def _out(self, *events: Any) -> bytes:
        return "".join(self.encoder.encode(e) for e in events).encode()

    def _state(self, **tracedagent: Any) -> StateSnapshotEvent:
        state = dict(self.agui.state) if isinstance(self.agui.state, dict) else {}
        state["tracedagent"] = tracedagent
        return StateSnapshotEvent(snapshot=state)

    def opening(self, tap: Tap) -> bytes:
        first = tap.first
        ids: dict[str, Any] = {}
        if first is not None:
            self.run_id = first.run_id
            ids = {"run_id": first.run_id, "trace_id": first.trace_id, "status": "running"}
        started = RunStartedEvent(thread_id=self.agui.thread_id, run_id=self.agui.run_id)
        return self._out(started, self._state(**ids))

    def _close_text(self) -> list[Any]:
        """The end of the answer's text or of the thinking, whichever is open (one is, at most)."""
        if self.message_id is None:
            return self._close_reasoning()
        ended = TextMessageEndEvent(message_id=self.message_id)
        self.message_id = None
        return [ended]

    def _open_reasoning(self) -> list[Any]:
        if self.reasoning_id is not None:
            return []
        closed = self._close_text()
        self.reasoning_id = reasoning_id = uuid.uuid4().hex
        return [
            *closed,
            ReasoningStartEvent(message_id=reasoning_id),
            ReasoningMessageStartEvent(message_id=reasoning_id, role="reasoning"),
        ]

    def _close_reasoning(self) -> list[Any]:
        if self.reasoning_id is None:
            return []
        reasoning_id, self.reasoning_id = self.reasoning_id, None
        return [ReasoningMessageEndEvent(message_id=reasoning_id), ReasoningEndEvent(message_id=reasoning_id)]

    def _reasoning(self, text: str) -> list[Any]:
        events = self._open_reasoning()
        assert self.reasoning_id is not None
        return [*events, ReasoningMessageContentEvent(message_id=self.reasoning_id, delta=text)]

    def item(self, event: object) -> bytes | None:
        if isinstance(event, ThinkingDelta):
            return self._out(*self._reasoning(event.text)) if event.text else None
        if isinstance(event, RunStarted | RunResumed):
            self.run_id = self.run_id or event.run_id  # the first is the top run's (Tap.first)
            return None
        if isinstance(event, ModelCallEnded):
            if event.run_id != self.run_id or event.purpose == "compaction":
                return None
            if self.streamed:  # its thinking has been streamed: a tool call or the answer comes next
                return self._out(*self._close_reasoning()) if self.reasoning_id else None
            thinking = event.output.thinking if event.output is not None else None
            return self._out(*self._reasoning(thinking), *self._close_reasoning()) if thinking else None
        if isinstance(event, TextDelta):
            if not event.text:
                return None
            events: list[Any] = self._close_reasoning()
            if self.message_id is None:
                self.message_id = uuid.uuid4().hex
                events.append(TextMessageStartEvent(message_id=self.message_id, role="assistant"))
            events.append(TextMessageContentEvent(message_id=self.message_id, delta=event.text))
            self.texted = True
            return self._out(*events)
        if isinstance(event, ToolCallStarted):
            return self._out(
                *self._close_text(),
                ToolCallStartEvent(tool_call_id=event.call_id, tool_call_name=event.tool),
                ToolCallArgsEvent(tool_call_id=event.call_id, delta=event.arguments or "{}"),
                ToolCallEndEvent(tool_call_id=event.call_id),
            )
        if isinstance(event, ToolCallEnded) and event.status != "interrupted":
            content = event.result if event.result is not None else json.dumps({"status": event.status})
            return self._out(
                ToolCallResultEvent(
                    message_id=uuid.uuid4().hex, tool_call_id=event.call_id, content=content, role="tool"
                )
            )
        return None

    def end(self, result: RunResult | None, error: BaseException | None) -> bytes:
        events: list[Any] = self._close_text()
        if result is None or result.status == "failed":
            message = str(error) if error is not None else "the run failed"
            code = type(error).__name__ if error is not None else None
            if result is not None:
                events.append(self._state(run_id=result.run_id, trace_id=result.trace_id, status=result.status))
            return self._out(*events, RunErrorEvent(message=message, code=code))
        if result.output and not self.texted:  # a resume: the answer was not streamed
            message_id = uuid.uuid4().hex
            events += [
                TextMessageStartEvent(message_id=message_id, role="assistant"),
                TextMessageContentEvent(message_id=message_id, delta=str(result.output)),
                TextMessageEndEvent(message_id=message_id),
            ]
        events.append(
            self._state(
                run_id=result.run_id,
                trace_id=result.trace_id,
                status=result.status,
                usage=usage_json(result.usage),
                interruptions=[{"id": i.id, "tool": i.tool, "kind": i.kind} for i in result.interruptions],
            )
        )
        if result.status == "interrupted":
            self.threads[self.agui.thread_id] = result.run_id
            interrupts = [
                Interrupt(
                    id=i.id,
                    reason="tool_call" if i.kind == "approval" else "input_required",
                    message=i.reason,
                    tool_call_id=i.id,
                    metadata={"run_id": result.run_id, "tool": i.tool, "kind": i.kind},
                )
                for i in result.interruptions
            ]
            outcome: Any = RunFinishedInterruptOutcome(type="interrupt", interrupts=interrupts)
        elif result.status == "cancelled":
            outcome = RunFinishedCancelledOutcome(type="cancelled")
        else:
            self.threads.pop(self.agui.thread_id, None)
            outcome = RunFinishedSuccessOutcome(type="success")
        return self._out(
            *events,
            RunFinishedEvent(
                thread_id=self.agui.thread_id, run_id=self.agui.run_id, result=result.output, outcome=outcome
            ),
        )
