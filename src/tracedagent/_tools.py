"""``@tool``: functions the model can call, with a JSON Schema from their annotations.

The docstring's first part is the description; a Google-style ``Args:`` section gives each argument's
description (a few lines of parsing, so no docstring library is needed). pydantic builds the schema and
validates the model's JSON arguments before the function runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints, overload

import pydantic
import pydantic_core

from ._text import bounded, describe_error, safe_str
from .exceptions import ConfigurationError, ToolArgumentsError, ToolDefinitionError, ToolTimeout
from .resilience import Bulkhead, CircuitBreaker, RetryPolicy
from .resilience._state import _all_tools, track  # noqa: F401 (_all_tools: the tools alive, for tests)

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "Tool",
    "ToolCallRequest",
    "ToolContext",
    "ToolSpec",
    "bounded",
    "describe_error",
    "external_tool",
    "tool",
]

#: How much of a tool's result (or error message) the model gets by default, in characters.
DEFAULT_MAX_RESULT_CHARS = 100_000

F = TypeVar("F", bound=Callable[..., Any])

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and per-argument descriptions."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in lines:
        match = _SECTION.match(line)
        if match:
            section = match.group(1).lower()
            current, arg_indent = None, None
            continue
        if section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters"):
            if not line.strip():
                continue
            arg = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if arg and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = arg.group(2).lstrip("*")
                args[current] = arg.group(4).strip()
            elif current is not None:
                args[current] = (args[current] + " " + line.strip()).strip()
    return "\n".join(description).strip(), args


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told about a tool: its name, description and JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call about to run, as the ``approve_tool_call`` decider sees it: ``arguments`` are the
    validated arguments as a dict, ``raw_arguments`` the JSON text the model sent."""

    tool: str
    call_id: str
    arguments: dict[str, Any]
    run_id: str
    agent: str
    raw_arguments: str = ""


class ToolContext:
    """The base of what a tool gets for a parameter annotated with it (:class:`tracedagent.RunContext`):
    tools recognise the annotation without depending on the run's modules."""

    __slots__ = ()


class SlotLease:
    """A local bulkhead slot held by one tool call. If the call is a sync function whose thread outlives
    the call (a timeout, a cancelled run), the thread keeps the slot until it ends, so ``max_concurrency``
    stays true of the threads really running, not only of the calls still awaited."""

    __slots__ = ("bulkhead", "kept")

    def __init__(self, bulkhead: Bulkhead) -> None:
        self.bulkhead = bulkhead
        self.kept = False

    def keep_until_done(self, work: concurrent.futures.Future[Any]) -> None:
        """Hand the slot to ``work``: it is released when that thread's call ends (from that thread)."""
        self.kept = True
        work.add_done_callback(self._release)

    def _release(self, _: concurrent.futures.Future[Any]) -> None:
        self.bulkhead.release()  # thread-safe: it wakes a waiter on the waiter's own loop


#: The slot of the tool call running in this context (set by the run loop around a local bulkhead).
slot_lease: contextvars.ContextVar[SlotLease | None] = contextvars.ContextVar("tracedagent_slot_lease", default=None)

_tool_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """The threads sync tools run in (made on first use, and again in a forked child)."""
    global _tool_executor
    if _tool_executor is None:
        _tool_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="tracedagent-tool"
        )
    return _tool_executor


def _forget_executor() -> None:
    global _tool_executor
    _tool_executor = None


os.register_at_fork(after_in_child=_forget_executor)


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _is_context(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", annotation)
    return isinstance(origin, type) and issubclass(origin, ToolContext)


def serialize_result(value: Any) -> str:
    """The text the model gets back: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    try:
        return pydantic_core.to_json(value).decode()
    except Exception:  # not JSON (or its serialiser raised): its text, whatever happens
        return safe_str(value)


class Tool:
    """A function the model can call. Build one with :func:`tool`."""

    def __init__(
        self,
        function: Callable[..., Any] | None,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        timeout: float | None = None,
        needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
        retries: RetryPolicy | int | None = None,
        breaker: CircuitBreaker | bool | None = True,
        max_concurrency: int | None = None,
        max_queue: int = 100,
        queue_timeout: float | None = None,
        bulkhead: Bulkhead | None = None,
        max_result_chars: int | None = None,
        idempotent: bool = False,
    ) -> None:
        if function is None and name is None:
            raise ToolDefinitionError("a tool without a function needs a name")
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", ""))
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not accepted by model APIs: use 1 to 64 letters, digits, "
                "'_', '-' or '.'; pass name= to choose another"
            )
        if timeout is not None and not timeout > 0:
            raise ToolDefinitionError(
                f"tool {self.name!r}: timeout must be a positive number of seconds, not {timeout!r}"
            )
        self.timeout = timeout
        if max_result_chars is not None and (
            isinstance(max_result_chars, bool) or not isinstance(max_result_chars, int) or max_result_chars < 1
        ):
            raise ToolDefinitionError(
                f"tool {self.name!r}: max_result_chars must be a whole number of characters >= 1, not "
                f"{max_result_chars!r}"
            )
        #: Past this many characters a result or error message is truncated (None: the agent's default).
        self.max_result_chars = max_result_chars
        if not (isinstance(needs_approval, bool) or callable(needs_approval)):
            raise ToolDefinitionError(
                f"tool {self.name!r}: needs_approval must be True, False or a function of the arguments, "
                f"not {needs_approval!r}"
            )
        self.needs_approval = needs_approval
        if not isinstance(idempotent, bool):
            raise ToolDefinitionError(f"tool {self.name!r}: idempotent must be True or False, not {idempotent!r}")
        #: Safe to run again after a crash interrupted it (see "Crash recovery" in the README).
        self.idempotent = idempotent
        #: A tool without a local function runs in the caller's world: the run pauses for its result.
        self.external = function is None
        #: Nothing to decide before calling it (the common case, kept cheap).
        self.plain = not self.external and needs_approval is False
        #: The resilience layers, outermost first: breaker, bulkhead, timeout, retry (see tracedagent.resilience).
        if breaker is True:
            breaker = CircuitBreaker()
        elif breaker is False:
            breaker = None
        elif breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ToolDefinitionError(
                f"tool {self.name!r}: breaker must be a CircuitBreaker, True (the default one) or False, "
                f"not {breaker!r}"
            )
        self.breaker: CircuitBreaker | None = breaker
        if bulkhead is not None:
            if not isinstance(bulkhead, Bulkhead):
                raise ToolDefinitionError(f"tool {self.name!r}: bulkhead must be a Bulkhead, not {bulkhead!r}")
            if max_concurrency is not None or max_queue != 100 or queue_timeout is not None:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: pass either bulkhead= or max_concurrency / max_queue / queue_timeout "
                    "(they configure a bulkhead of its own), not both"
                )
            if not bulkhead.name:
                bulkhead.name = self.name
        try:
            self.bulkhead = (
                bulkhead
                if bulkhead is not None
                else Bulkhead(max_concurrency, max_queue=max_queue, queue_timeout=queue_timeout, name=self.name)
            )
            self.retry = RetryPolicy.of(retries)
        except ConfigurationError as exc:
            raise ToolDefinitionError(str(exc)) from None
        #: Results of sync calls that finished after their timeout, and were discarded.
        self.late_results = 0
        track(self)
        doc_description, arg_docs = parse_docstring(getattr(function, "__doc__", None))
        self.description = description if description is not None else doc_description
        self.is_async = function is not None and inspect.iscoroutinefunction(function)
        self.context_param: str | None = None
        self._fields: tuple[str, ...] = ()
        self._validator: pydantic.TypeAdapter[Any] | None = None
        self._args_model: type[pydantic.BaseModel] | None = None
        if function is not None:
            self._args_model = self._build_model(function, arg_docs)
            self._fields = tuple(self._args_model.model_fields)
        if parameters is not None:
            self.parameters = parameters
        elif self._args_model is not None:
            self.parameters = _strip_titles(self._args_model.model_json_schema())
            self.parameters.setdefault("properties", {})
        else:
            self.parameters = {"type": "object", "properties": {}}
        self.spec = ToolSpec(self.name, self.description, self.parameters)

    def _build_model(self, function: Callable[..., Any], arg_docs: dict[str, str]) -> type[pydantic.BaseModel]:
        signature = inspect.signature(function)
        try:
            hints = get_type_hints(function, include_extras=True)
        except Exception as exc:
            raise ToolDefinitionError(f"tool {self.name!r}: cannot resolve its type annotations: {exc}") from exc
        fields: dict[str, Any] = {}
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r}: *{param.name} / **{param.name} cannot be described to a model; "
                    "list the arguments explicitly"
                )
            annotation = hints.get(param.name, inspect.Parameter.empty)
            if annotation is inspect.Parameter.empty:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: argument {param.name!r} has no type annotation; annotate it "
                    "(for example `{0}: str`) so the model is told what to send".format(param.name)
                )
            if _is_context(annotation):
                self.context_param = param.name
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (
                annotation,
                pydantic.Field(default, description=arg_docs.get(param.name) or None),
            )
        try:
            return pydantic.create_model(f"{self.name}_arguments", **fields)
        except Exception as exc:
            raise ToolDefinitionError(f"tool {self.name!r}: its arguments cannot be described: {exc}") from exc

    def validate(self, arguments: str) -> dict[str, Any]:
        """Parse and validate the model's JSON arguments; raises :class:`ToolArgumentsError`."""
        if self._args_model is None:
            try:
                value = pydantic_core.from_json(arguments or "{}")
            except ValueError as exc:
                raise ToolArgumentsError(
                    f"tool {self.name!r}: arguments are not valid JSON ({exc}); send a JSON object", tool=self.name
                ) from None
            if not isinstance(value, dict):
                raise ToolArgumentsError(f"tool {self.name!r}: arguments must be a JSON object", tool=self.name)
            return value
        try:
            model = self._args_model.model_validate_json(arguments or "{}")
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise ToolArgumentsError(
                f"tool {self.name!r}: invalid arguments ({problems}); call it again with arguments that "
                "match its schema",
                tool=self.name,
            ) from None
        values = model.__dict__
        return {name: values[name] for name in self._fields}

    async def invoke(
        self,
        arguments: str,
        context: ToolContext | None = None,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> str:
        """Validate ``arguments``, run the function (sync ones in a worker thread) under its timeout and
        retries, and serialise its result. Raises :class:`ToolArgumentsError` or :class:`ToolTimeout`;
        the function's own exceptions propagate (after the retries)."""
        if self.function is None:
            raise ToolDefinitionError(f"tool {self.name!r} has no local function")
        kwargs = self.validate(arguments)
        if self.context_param is not None:
            kwargs[self.context_param] = context
        retry = self.retry

        async def attempt() -> Any:
            return await self._call(kwargs)

        if self.timeout is None:
            if retry is None:
                return serialize_result(await self._call(kwargs))
            return serialize_result(await retry.call(attempt, on_retry))
        try:
            async with asyncio.timeout(self.timeout):
                if retry is None:
                    return serialize_result(await self._call(kwargs))
                return serialize_result(await retry.call(attempt, on_retry))
        except TimeoutError:
            raise ToolTimeout(
                f"tool {self.name!r} did not finish within its timeout of {self.timeout:g}s; try a smaller "
                "request or another approach",
                tool=self.name,
            ) from None

    def _call(self, kwargs: dict[str, Any]) -> Awaitable[Any]:
        assert self.function is not None
        if self.is_async:
            return self.function(**kwargs)  # type: ignore[no-any-return]
        return self._call_in_thread(kwargs)

    async def _call_in_thread(self, kwargs: dict[str, Any]) -> Any:
        """A sync function in a worker thread, with the caller's context (span, approval). A thread
        cannot be killed: when the call is cancelled (its timeout, the run cancelled) it runs on, its
        late result is discarded and counted in ``late_results``, and it keeps the call's bulkhead slot
        until it ends (a local bulkhead's; see :class:`SlotLease`)."""
        assert self.function is not None
        function = functools.partial(self.function, **kwargs)
        work = _executor().submit(contextvars.copy_context().run, function)
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            if not work.cancel():
                work.add_done_callback(self._count_late)
                lease = slot_lease.get()
                if lease is not None and not lease.kept:
                    lease.keep_until_done(work)
            raise

    def _count_late(self, _: concurrent.futures.Future[Any]) -> None:
        self.late_results += 1

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no telemetry)."""
        if self.function is None:
            raise ToolDefinitionError(f"tool {self.name!r} has no local function")
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@overload
def tool(function: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
    retries: RetryPolicy | int | None = None,
    breaker: CircuitBreaker | bool | None = True,
    max_concurrency: int | None = None,
    max_queue: int = 100,
    queue_timeout: float | None = None,
    bulkhead: Bulkhead | None = None,
    max_result_chars: int | None = None,
    idempotent: bool = False,
) -> Callable[[F], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False,
    retries: RetryPolicy | int | None = None,
    breaker: CircuitBreaker | bool | None = True,
    max_concurrency: int | None = None,
    max_queue: int = 100,
    queue_timeout: float | None = None,
    bulkhead: Bulkhead | None = None,
    max_result_chars: int | None = None,
    idempotent: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a sync or async function into a :class:`Tool`.

    The docstring is the description (an ``Args:`` section describes each argument); the annotations
    give the JSON Schema; the model's arguments are validated before the call. A parameter annotated
    :class:`RunContext` receives the run's context and is hidden from the model. Sync functions run in a
    worker thread so they never block the event loop. ``needs_approval`` (a bool, or a function of the
    validated arguments) pauses the run for a person's decision before each call.

    Every call passes, in this order: approval, the circuit breaker (``breaker``: a
    :class:`CircuitBreaker`, the default one, or False), the bulkhead (``max_concurrency`` in flight
    across the process, ``max_queue`` waiting, ``queue_timeout``), the ``timeout`` (over all attempts),
    the retries (``retries``: a number or a :class:`RetryPolicy`), and the call.

    ``bulkhead`` takes a bulkhead built beforehand instead of those three settings: a
    :class:`~tracedagent.resilience.Bulkhead` given to several tools limits them together, and a
    :class:`~tracedagent.resilience.RedisBulkhead` shares the limit between worker processes.

    ``max_result_chars`` bounds what the model gets back (the result, or the error message): past it the
    text is truncated and says so. Without it the agent's ``max_result_chars`` applies (100,000 by default).

    ``idempotent=True`` says that running the call twice is as good as once: a call that was in flight
    when its process crashed runs again when the run is resumed. A call of any other tool is not run
    again; the model gets an error result saying it was interrupted by a crash and not retried.
    """

    def wrap(fn: Callable[..., Any]) -> Tool:
        if not callable(fn):
            raise ToolDefinitionError(f"@tool needs a function, not {fn!r}")
        return Tool(
            fn,
            name=name,
            description=description,
            timeout=timeout,
            needs_approval=needs_approval,
            retries=retries,
            breaker=breaker,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            bulkhead=bulkhead,
            max_result_chars=max_result_chars,
            idempotent=idempotent,
        )

    if function is not None:
        return wrap(function)
    return wrap


def external_tool(
    name: str, description: str = "", parameters: dict[str, Any] | type[pydantic.BaseModel] | None = None
) -> Tool:
    """A tool that runs in the caller's world, not in the agent: when the model calls it the run pauses
    (an ``external`` interruption) and ``agent.resume(run_id, results={call_id: value})`` gives its result.
    ``parameters`` is the JSON Schema of its arguments, or a pydantic model describing them."""
    if isinstance(parameters, type) and issubclass(parameters, pydantic.BaseModel):
        schema = _strip_titles(parameters.model_json_schema())
    elif parameters is None or isinstance(parameters, dict):
        schema = parameters if parameters is not None else {"type": "object", "properties": {}}
    else:
        raise ToolDefinitionError(f"external tool {name!r}: parameters must be a JSON Schema dict or a pydantic model")
    return Tool(None, name=name, description=description, parameters=schema)
