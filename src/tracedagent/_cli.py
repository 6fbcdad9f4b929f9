"""The ``tracedagent`` command: ``demo``, ``run``, ``resume``, ``runs``, ``plugins``, ``serve``.

``run MODULE:AGENT PROMPT`` runs an agent once; a run that pauses prints its run id and each pending
call, which ``resume MODULE:AGENT RUN_ID --approve CALL_ID / --deny CALL_ID [--reason ...] /
--result CALL_ID=VALUE`` decides, in this or a later process (from the agent's store: ``checkpoints=``
or ``TRACEDAGENT_CHECKPOINTS``). ``runs MODULE:AGENT`` lists the paused runs in that store. A call's
arguments are user content: they are printed only when content capture is on
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` or ``TRACEDAGENT_CAPTURE_CONTENT`` true), as in
telemetry and logs.

Exit codes (:data:`EXIT_CODES`): 0 the run completed, 1 the run failed, 2 the command was wrong (usage,
an agent that cannot be loaded, an unknown run or call, a plugin that cannot load), 3 the run is paused
waiting for a decision or an external result, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import _plugins
from ._agent import Agent
from ._approval import Approval
from ._checkpoint import Checkpoint, CheckpointStore, InMemoryCheckpointStore, list_paused
from ._demo_scenes import SCENE_RUNS, scenes_text
from ._events import Interruption
from ._export import flush
from ._plugin_errors import CAPTURE_VARIABLES, capture_content
from ._result import RunResult
from .exceptions import RunError, TracedAgentError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PAUSED = 3
EXIT_CTRL_C = 130

EXIT_CODES = {
    EXIT_OK: "the run completed (its output is printed)",
    EXIT_FAILED: "the run failed (its run id is printed: resume it once the cause is fixed)",
    EXIT_USAGE: "the command was wrong: usage, an agent that cannot be loaded, an unknown run or call",
    EXIT_PAUSED: "the run is paused: it waits for --approve / --deny or --result (its run id and calls are printed)",
    EXIT_CTRL_C: "interrupted (Ctrl-C)",
}


class _CommandError(Exception):
    """A command that cannot work as given; main prints it and exits with EXIT_USAGE."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {value:g}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracedagent",
        description="Observable-first agents: run the demo, run an agent, list the plugins.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the built-in demo agent offline and print its events")
    demo.add_argument(
        "--runs",
        type=_positive_int,
        default=6,
        help=f"how many trip questions to run (default 6); the demo adds {SCENE_RUNS} scene runs that show one "
        f"stage each ({scenes_text()}), so the summary counts N+{SCENE_RUNS} runs",
    )
    demo.add_argument("--concurrency", type=_positive_int, default=3, help="runs at once (default 3)")
    demo.add_argument(
        "--linger",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="stay alive after the scenario (to scrape /metrics)",
    )
    demo.add_argument("--quiet", action="store_true", help="print only the summary, not the event stream")
    demo.add_argument(
        "--serve", action="store_true", help="serve the demo agent and its page instead (see `tracedagent serve`)"
    )
    demo.add_argument(
        "--model",
        metavar="PROVIDER:MODEL",
        help="run the demo agent on a real model instead of the scripted one: openai:gpt-4o-mini, "
        "anthropic:claude-sonnet-4-5, or openai:MODEL with OPENAI_BASE_URL pointing at a local server",
    )
    demo.add_argument(
        "--mcp",
        metavar="COMMAND",
        help='add the tools of an MCP server started over stdio, e.g. --mcp "python -m repo_explorer.mcp_server" '
        '(needs pip install "tracedagent[mcp]"); one more run calls each of them',
    )

    codes = "exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())
    target_help = "an importable module and the Agent in it (or a function that returns one)"
    run = sub.add_parser(
        "run",
        help="run an agent once: tracedagent run MODULE:AGENT PROMPT",
        description="Run an agent once and print its output. A run that pauses for approval prints its run id "
        "and pending calls; decide them with `tracedagent resume`.",
        epilog=codes,
    )
    run.add_argument("target", metavar="MODULE:AGENT", help=target_help)
    run.add_argument("prompt", help="what to ask the agent")

    resume = sub.add_parser(
        "resume",
        help="decide a paused run's calls and go on: tracedagent resume MODULE:AGENT RUN_ID --approve CALL_ID",
        description="Go on with a paused (or failed) run from the agent's store, in this process or another. "
        "Every pending call needs a decision; each option can be given again for more calls.",
        epilog=codes,
    )
    resume.add_argument("target", metavar="MODULE:AGENT", help=target_help)
    resume.add_argument("run_id", metavar="RUN_ID", help="the run id `run` or `runs` printed")
    resume.set_defaults(answers=None)
    resume.add_argument(
        "--approve", action=_Answered, metavar="CALL_ID", help="approve this pending call (it runs as the model asked)"
    )
    resume.add_argument(
        "--deny", action=_Answered, metavar="CALL_ID", help="deny this pending call (the model is told it was denied)"
    )
    resume.add_argument("--reason", action=_Answered, metavar="TEXT", help="why: goes with the --deny just before it")
    resume.add_argument(
        "--result",
        action=_Answered,
        metavar="CALL_ID=VALUE",
        help="the result of a pending external tool call, given as text",
    )

    runs = sub.add_parser(
        "runs",
        help="list the paused runs in an agent's store: tracedagent runs MODULE:AGENT",
        description="List the runs of an agent that wait for a decision in its store (checkpoints= or "
        "TRACEDAGENT_CHECKPOINTS): run id, since when, and each pending call.",
    )
    runs.add_argument("target", metavar="MODULE:AGENT", help=target_help)

    sub.add_parser("plugins", help="list the plugins that load, where from, their hooks and status")

    serve = sub.add_parser(
        "serve",
        help="serve an agent over HTTP, SSE and AG-UI, with a page: tracedagent serve MODULE:AGENT",
        description="Serve an agent: POST /v1/runs (JSON or SSE), /v1/runs/{id}/resume, GET /v1/runs/{id}, "
        "POST /agui, GET /metrics, GET /healthz, and a page at / that draws each run's trace live. "
        "Needs the serve extra: pip install 'tracedagent[serve]'.",
    )
    serve.add_argument("target", metavar="MODULE:AGENT", help=target_help)
    _serve_options(serve)
    _serve_options(demo, prefix="with --serve: ")
    return parser


def _serve_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    env = "TRACEDAGENT_SERVE_"
    parser.add_argument("--host", default=None, help=f"{prefix}address to listen on ({env}HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=_positive_int, default=None, help=f"{prefix}port ({env}PORT, default 8000)")
    parser.add_argument(
        "--token",
        default=None,
        help=f"{prefix}require Authorization: Bearer TOKEN on every route but /healthz ({env}TOKEN)",
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"{prefix}runs at once; more get 429 ({env}MAX_CONCURRENT_RUNS, default 100)",
    )


def _serve(agent: Agent, args: argparse.Namespace) -> int:
    try:
        from .serve import serve, settings_from_env
    except ImportError as exc:
        raise _CommandError(f"serving needs the serve extra ({exc}): pip install 'tracedagent[serve]'") from None
    try:
        env = settings_from_env()
    except ValueError as exc:
        raise _CommandError(str(exc)) from None
    serve(
        agent,
        host=args.host or env.host,
        port=args.port or env.port,
        token=args.token or env.token,
        max_concurrent_runs=args.max_concurrent_runs or env.max_concurrent_runs,
    )
    return EXIT_OK


@dataclass(frozen=True, slots=True)
class _Answer:
    """One decision given to ``resume``: approve, deny (maybe with a reason) or an external result."""

    call_id: str
    action: str
    text: str | None = None


class _Answered(argparse.Action):
    """``--approve`` / ``--deny`` / ``--reason`` / ``--result``, kept in the order given (a reason belongs
    to the ``--deny`` before it)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = str(values)
        answers: list[_Answer] = list(namespace.answers or [])
        if option_string == "--reason":
            if not answers or answers[-1].action != "deny" or answers[-1].text is not None:
                parser.error("--reason explains a denial: put it right after the --deny CALL_ID it is for")
            answers[-1] = _Answer(answers[-1].call_id, "deny", value)
        else:
            action = (option_string or "--approve").lstrip("-")
            text = None
            if action == "result":
                value, equals, text = value.partition("=")
                if not equals or not value:
                    parser.error(f"--result takes CALL_ID=VALUE (for example --result call_1=42), not {values!r}")
            if any(a.call_id == value for a in answers):
                parser.error(f"call {value!r} is decided twice; give one --approve, --deny or --result per call")
            answers.append(_Answer(value, action, text))
        namespace.answers = answers


def _load_agent(target: str) -> Agent:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise _CommandError(f"expected MODULE:AGENT (for example myapp.agents:support), got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _CommandError(f"cannot import {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _CommandError(f"{module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Agent):
        obj = obj()
    if not isinstance(obj, Agent):
        raise _CommandError(f"{target} is a {type(obj).__name__}, not a tracedagent.Agent")
    return obj


def _list_plugins() -> int:
    infos = _plugins.list_plugins()
    if not infos:
        print("no plugins loaded (install one, or name a module in TRACEDAGENT_PLUGINS)")
    for info in infos:
        print(f"{info.name}")
        print(f"  from:   {info.source}")
        print(f"  hooks:  {', '.join(info.hooks) or '-'}")
        print(f"  status: {info.status}")
    return 0


def _when(ns: int | None) -> str:
    if ns is None:
        return "an unknown time"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _print_calls(calls: Sequence[Interruption]) -> None:
    """Each pending call: id, tool, what it waits for and why; its arguments only under content capture."""
    shown = capture_content()
    for call in calls:
        waits = "needs approval" if call.kind == "approval" else "needs its result (an external tool)"
        print(f"  call {call.id}: tool {call.tool}, {waits}: {call.reason}")
        if shown:
            print(f"    arguments: {call.arguments}")
    if calls and not shown:
        print(
            f"  (arguments not shown: they are user content and content capture is off; set {CAPTURE_VARIABLES[1]}"
            f"=true or {CAPTURE_VARIABLES[0]}=true to show them)"
        )


def _paused(target: str, agent: Agent, result: RunResult) -> int:
    calls = result.interruptions
    print(f"run {result.run_id} is paused: {len(calls)} call{'s' if len(calls) != 1 else ''} waiting")
    _print_calls(calls)
    approvals = " ".join(f"--approve {c.id}" for c in calls if c.kind == "approval")
    results = " ".join(f"--result {c.id}=VALUE" for c in calls if c.kind == "external")
    print(f"go on with: tracedagent resume {target} {result.run_id} {' '.join(filter(None, (approvals, results)))}")
    if any(c.kind == "approval" for c in calls):
        print("  (or --deny CALL_ID [--reason TEXT] for a call you refuse)")
    if isinstance(agent.store(), InMemoryCheckpointStore):
        print(
            f"note: agent {agent.name!r} keeps its runs in this process's memory, so this run ends with "
            "the process; give it a store to resume it later (Agent(checkpoints='runs.db') or TRACEDAGENT_CHECKPOINTS)",
            file=sys.stderr,
        )
    return EXIT_PAUSED


def _outcome(target: str, agent: Agent, run: Coroutine[Any, Any, RunResult]) -> int:
    """Run ``run`` (a coroutine giving a :class:`RunResult`); print what it gives; the exit code."""
    try:
        result = asyncio.run(run)
    except RunError as exc:
        run_id = exc.result.run_id if exc.result is not None else None
        print(f"run {run_id} failed: {exc}" if run_id else f"run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        flush(5.0)
    if result.status == "interrupted":
        return _paused(target, agent, result)
    print(result.output)
    return EXIT_OK


def _durable_store(agent: Agent) -> CheckpointStore:
    store = agent.store()
    if isinstance(store, InMemoryCheckpointStore):
        raise _CommandError(
            f"agent {agent.name!r} keeps its runs in the memory of the process that ran them, so no run outlives "
            "that process; give it a store (Agent(checkpoints='runs.db')) or set TRACEDAGENT_CHECKPOINTS=runs.db"
        )
    return store


def _check_answers(checkpoint: Checkpoint, answers: Sequence[_Answer]) -> None:
    """Every pending call decided, each the way its kind needs, and no other call: else say what is pending."""
    pending = {call.id: call for call in checkpoint.pending}
    listing = ", ".join(
        f"{c.id} (tool {c.tool}, {'approval' if c.kind == 'approval' else 'external'})" for c in pending.values()
    )
    run = f"run {checkpoint.run_id!r}"
    for answer in answers:
        call = pending.get(answer.call_id)
        if call is None:
            raise _CommandError(f"{run} has no pending call {answer.call_id!r}; pending: {listing or 'none'}")
        if call.kind == "external" and answer.action != "result":
            raise _CommandError(
                f"call {call.id!r} is an external tool call: give its result with --result {call.id}=VALUE"
            )
        if call.kind == "approval" and answer.action == "result":
            raise _CommandError(
                f"call {call.id!r} waits for approval: decide it with --approve {call.id} or --deny {call.id}"
            )
    decided = {answer.call_id for answer in answers}
    missing = [call for call in pending.values() if call.id not in decided]
    if missing:
        how = ", ".join(
            f"--approve {c.id} or --deny {c.id}" if c.kind == "approval" else f"--result {c.id}=VALUE" for c in missing
        )
        raise _CommandError(f"{run} also waits on {', '.join(c.id for c in missing)}: add {how} (pending: {listing})")


async def _resume(target: str, agent: Agent, run_id: str, answers: Sequence[_Answer]) -> RunResult:
    store = _durable_store(agent)
    checkpoint = await store.load(run_id)
    if checkpoint is None:
        raise _CommandError(
            f"no run {run_id!r} in {store!r}; `tracedagent runs {target}` lists the paused runs of agent {agent.name!r}"
        )
    if checkpoint.status != "completed" and checkpoint.agent == agent.name:
        _check_answers(checkpoint, answers)
    approvals = {
        a.call_id: Approval.allow() if a.action == "approve" else Approval.deny(a.text)
        for a in answers
        if a.action != "result"
    }
    results = {a.call_id: a.text for a in answers if a.action == "result"}
    return await agent.resume(run_id, approvals, results=results)


def _list_runs(target: str, agent: Agent) -> int:
    store = _durable_store(agent)
    paused: list[Checkpoint] = asyncio.run(list_paused(store, agent.name))
    if not paused:
        print(f"no paused runs of agent {agent.name!r} in {store!r}")
        return EXIT_OK
    print(f"{len(paused)} paused run{'s' if len(paused) != 1 else ''} of agent {agent.name!r} in {store!r}")
    for checkpoint in paused:
        print(f"run {checkpoint.run_id}: paused since {_when(checkpoint.paused_at_ns)}")
        _print_calls(checkpoint.pending)
    print(
        f"decide with: tracedagent resume {target} RUN_ID --approve CALL_ID (or --deny CALL_ID, --result CALL_ID=VALUE)"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import build_demo_agent, run_demo

            model = None
            if args.model:
                from .models import resolve_model

                model = resolve_model(args.model)
            if args.serve:
                return _serve(build_demo_agent(model), args)
            return run_demo(
                runs=args.runs,
                concurrency=args.concurrency,
                linger=args.linger,
                quiet=args.quiet,
                model=model,
                mcp=args.mcp,
            )
        if args.command == "run":
            agent = _load_agent(args.target)
            return _outcome(args.target, agent, agent.run(args.prompt))
        if args.command == "resume":
            agent = _load_agent(args.target)
            return _outcome(args.target, agent, _resume(args.target, agent, args.run_id, args.answers or []))
        if args.command == "runs":
            return _list_runs(args.target, _load_agent(args.target))
        if args.command == "serve":
            return _serve(_load_agent(args.target), args)
        return _list_plugins()
    except (_CommandError, TracedAgentError) as exc:
        print(f"tracedagent {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_CTRL_C
