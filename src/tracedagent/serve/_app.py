"""The Starlette app: the routes, request bodies, errors, and the settings they read.

Routes: ``POST /v1/runs``, ``POST /v1/runs/{run_id}/resume``, ``GET /v1/runs/{run_id}``, ``POST /agui``,
``GET /metrics``, ``GET /healthz``, and the page (``GET /``, ``/static/...``). Errors are JSON,
``{"error": {"type": ..., "message": ...}}``: 400 malformed JSON, 401 a missing or wrong token, 404 an
unknown run, 409 a run that is going already, 413 a body past ``max_body_bytes``, 422 a body that does
not fit (unknown fields, wrong types), 429 (with ``Retry-After``) past ``max_concurrent_runs``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import _plugins
from .._ids import SpanContext
from ._agui import AguiEncoder, agui_call
from ._auth import BearerAuth
from ._bodies import ResumeBody, RunBody
from ._runs import Refused, Runs, ServedAgent, SSEEncoder, resume_call, run_call
from ._sse import EventStream, finished_or_gone
from ._tap import parent_from
from ._wire import dumps, error_json, result_json

__all__ = ["ServeSettings", "asgi_app", "settings_from_env"]

STATIC = Path(__file__).parent / "static"
M = TypeVar("M", bound=BaseModel)

ENV_HOST = "TRACEDAGENT_SERVE_HOST"
ENV_PORT = "TRACEDAGENT_SERVE_PORT"
ENV_TOKEN = "TRACEDAGENT_SERVE_TOKEN"
ENV_MAX_RUNS = "TRACEDAGENT_SERVE_MAX_CONCURRENT_RUNS"
ENV_MAX_BODY = "TRACEDAGENT_SERVE_MAX_BODY_BYTES"

DEFAULT_MAX_RUNS = 100
DEFAULT_MAX_BODY = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    """How a server runs: where it listens, its token, and its limits."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_concurrent_runs: int | None = DEFAULT_MAX_RUNS
    max_body_bytes: int = DEFAULT_MAX_BODY


def _int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def settings_from_env() -> ServeSettings:
    """The settings in ``TRACEDAGENT_SERVE_HOST``, ``_PORT``, ``_TOKEN``, ``_MAX_CONCURRENT_RUNS`` and
    ``_MAX_BODY_BYTES``, else the defaults (127.0.0.1:8000, no token, 100 runs, 1 MiB)."""
    return ServeSettings(
        host=os.environ.get(ENV_HOST, "").strip() or "127.0.0.1",
        port=_int(ENV_PORT, 8000),
        token=os.environ.get(ENV_TOKEN) or None,
        max_concurrent_runs=_int(ENV_MAX_RUNS, DEFAULT_MAX_RUNS),
        max_body_bytes=_int(ENV_MAX_BODY, DEFAULT_MAX_BODY),
    )


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return JSONResponse(error_json(kind, message, **extra), status_code=status, headers=headers)


def _refused(exc: Refused) -> Response:
    headers = {"retry-after": str(exc.retry_after)} if exc.retry_after is not None else None
    return _error(exc.status, exc.kind, str(exc), headers)


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (413 past it, without reading the rest)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Refused(413, "body_too_large", f"the body has {int(length)} bytes; this server takes at most {limit}")
    receive = request.receive
    data = b""
    while True:  # the ASGI messages themselves: Starlette's request.stream() is a generator around them
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "client_disconnected", "the client went away before it had sent its body")
        data += bytes(message.get("body", b""))
        if len(data) > limit:
            raise Refused(413, "body_too_large", f"the body is over {limit} bytes, the most this server takes")
        if not message.get("more_body", False):
            break
    if not data:
        raise Refused(400, "malformed_json", "the body is empty; send a JSON object")
    return data


def _validated(model: type[M], data: bytes) -> M:
    """``data`` parsed and checked in one pass (pydantic's JSON parser): 400 when it is not JSON, 422 when
    it does not fit ``model``."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        broken = next((e for e in errors if e["type"] == "json_invalid"), None)
        if broken is not None:
            reason = broken.get("ctx", {}).get("error") or broken["msg"]
            raise Refused(400, "malformed_json", f"the body is not valid JSON: {reason}") from None
        problems = [
            {"loc": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"], "type": e["type"]}
            for e in errors
        ]
        summary = "; ".join(f"{p['loc']}: {p['message']}" for p in problems)
        raise Refused(422, "invalid_body", f"the body does not fit {model.__name__}: {summary}") from None


def _streams(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _parent(request: Request) -> SpanContext | None:
    """The caller's span from the request's ``traceparent`` and ``tracestate`` headers (see :func:`parent_from`)."""
    headers = request.headers
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return None
    return parent_from(traceparent, ",".join(headers.getlist("tracestate")))


def asgi_app(
    agent: ServedAgent,
    *,
    token: str | None = None,
    max_concurrent_runs: int | None = None,
    max_body_bytes: int | None = None,
    keepalive_s: float = 15.0,
    page: bool = True,
) -> Any:
    """A Starlette app serving ``agent``: the HTTP and SSE API, AG-UI, metrics, health, and the page.

    ``token`` (default ``TRACEDAGENT_SERVE_TOKEN``) makes every route but ``/healthz`` need
    ``Authorization: Bearer <token>``. ``max_concurrent_runs`` (default
    ``TRACEDAGENT_SERVE_MAX_CONCURRENT_RUNS``, else 100) counts runs and resumes going on at once; past it a
    request gets 429. ``max_body_bytes`` (default 1 MiB) bounds a request body. ``keepalive_s`` is how
    often a quiet SSE stream gets a comment.
    """
    env = settings_from_env()
    token = env.token if token is None else (token or None)
    limit = env.max_concurrent_runs if max_concurrent_runs is None else max_concurrent_runs
    body_limit = env.max_body_bytes if max_body_bytes is None else max_body_bytes
    _plugins.load_plugins()
    runs = Runs(agent, max_concurrent_runs=limit)
    threads: dict[str, str] = {}

    async def answer(request: Request, call: Callable[[bool], Any]) -> Response:
        """Start ``call(streaming)`` under the request's ``traceparent``; answer with its SSE stream when
        the client asks for one, else with its result as JSON."""
        parent = _parent(request)
        if _streams(request):
            started = runs.start(call(True), parent, encoder=SSEEncoder())
            await runs.first_span(started)
            assert started.queue is not None
            return EventStream(started.queue, started.task, started.headers, keepalive_s=keepalive_s)  # type: ignore[return-value]
        started = runs.start(call(False), parent, encoder=None)
        if not await finished_or_gone(started.task, request.receive):
            # The client went away and the run is cancelled; nobody reads this (nginx's "client closed").
            return Response(status_code=499)
        result, error = started.task.result()
        return _result_response(result, error, started.headers)  # type: ignore[no-any-return]

    async def start_run(request: Request) -> Response:
        body = _validated(RunBody, await _body(request, body_limit))
        return await answer(request, lambda streaming: run_call(agent, body, streaming))

    async def resume_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = _validated(ResumeBody, await _body(request, body_limit))
        record = runs.records.get(run_id)
        if record is not None and record.status == "running":
            raise Refused(409, "run_going", f"run {run_id!r} is going; resume it once it pauses")
        if await agent.store().load(run_id) is None:
            raise Refused(404, "unknown_run", f"no run {run_id!r} to resume in {agent.store()!r}")
        return await answer(request, lambda streaming: resume_call(agent, run_id, body))

    async def get_run(request: Request) -> Response:
        return JSONResponse(await runs.lookup(request.path_params["run_id"]))

    async def agui(request: Request) -> Response:
        from ag_ui.core import RunAgentInput

        agui_input = _validated(RunAgentInput, await _body(request, body_limit))
        parent = _parent(request)
        call = await agui_call(agent, agui_input, threads)
        encoder = AguiEncoder(agui_input, threads)
        started = runs.start(call, parent, encoder=encoder)
        await runs.first_span(started)
        assert started.queue is not None
        first = encoder.opening(started.tap)
        return EventStream(started.queue, started.task, started.headers, keepalive_s=keepalive_s, first=first)  # type: ignore[return-value]

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "agent": agent.name, "active_runs": runs.active, "max_concurrent_runs": limit}
        )

    async def metrics(request: Request) -> Response:
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            from tracedagent_prometheus import exposition_registry
        except ImportError:
            return _error(
                404, "no_metrics", "the Prometheus plugin is not installed: pip install tracedagent-prometheus"
            )
        return Response(generate_latest(exposition_registry()), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return _refused(exc)

    routes: list[Any] = [
        Route("/v1/runs", start_run, methods=["POST"]),
        Route("/v1/runs/{run_id}/resume", resume_run, methods=["POST"]),
        Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
        Route("/agui", agui, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if page:
        routes += [Route("/", index, methods=["GET"]), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    app = Starlette(routes=routes, exception_handlers={Refused: refused})
    app.state.runs = runs
    return BearerAuth(app, token) if token else app


def _result_response(result: Any, error: BaseException | None, headers: dict[str, str]) -> Any:
    if result is None:
        message = str(error) if error is not None else "the run ended without a result"
        return _error(500, type(error).__name__ if error is not None else "no_result", message, headers)
    return JSONBody(dumps(result_json(result, error)), headers)


class JSONBody:
    """A 200 answer whose JSON is already bytes: sent as it is, in two ASGI messages (what Starlette's
    ``Response`` does too, without its header and background machinery)."""

    __slots__ = ("body", "headers")

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})
