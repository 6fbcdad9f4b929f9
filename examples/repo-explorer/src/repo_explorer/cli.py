"""The ``repo-explorer`` command: ``repo-explorer ask "question" --root PATH [--model PROVIDER:MODEL]``.

Without ``--model`` (or ``REPO_EXPLORER_MODEL``) it runs offline on :func:`offline_model`. With
``--allow-write`` the agent may write files, and each write is put to you on the terminal first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import tracedagent
from tracedagent import Interruption, Model, RunError, RunResult, TracedAgentError
from tracedagent.models import resolve_model
from tracedagent.testing import RecordingTracer

from .agent import build_agent
from .offline import offline_model

__all__ = ["main"]

MODEL_VARIABLE = "REPO_EXPLORER_MODEL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repo-explorer", description="Ask questions about a code base.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ask = sub.add_parser("ask", help="answer one question about the code under --root")
    ask.add_argument("question", help="what to ask, for example 'Where are retries configured?'")
    ask.add_argument("--root", default=".", help="the repository to explore (default: the current directory)")
    ask.add_argument(
        "--model",
        metavar="PROVIDER:MODEL",
        help=f"a real model, for example openai:gpt-4o-mini or anthropic:claude-sonnet-4-5 (default: "
        f"${MODEL_VARIABLE}, else offline, with a keyword search standing in for a model)",
    )
    ask.add_argument(
        "--allow-write", action="store_true", help="let the agent write files; you approve each write here"
    )
    ask.add_argument("--max-turns", type=int, default=12, help="model calls at most (default 12)")
    ask.add_argument("--trace", action="store_true", help="print the run's span tree to stderr at the end")
    return parser


def _model(spec: str | None) -> Model:
    spec = spec or os.environ.get(MODEL_VARIABLE) or None
    if spec is None:
        print(f"repo-explorer: no model given (--model or {MODEL_VARIABLE}); running offline", file=sys.stderr)
        return offline_model()
    return resolve_model(spec)


def _decide(pending: Interruption) -> bool:
    """Ask on the terminal whether a paused call may run; no answer (no terminal) means no."""
    arguments = json.loads(pending.arguments or "{}")
    shown = ", ".join(
        f"{k}={v!r}" if len(repr(v)) < 200 else f"{k}=<{len(str(v))} characters>" for k, v in arguments.items()
    )
    print(f"\nThe agent asks to run {pending.tool}({shown}): {pending.reason}", file=sys.stderr)
    try:
        return input("Allow? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tracer = RecordingTracer() if args.trace else None
    try:
        agent = build_agent(
            args.root,
            _model(args.model),
            allow_write=args.allow_write,
            max_turns=args.max_turns,
            plugins=[tracer] if tracer is not None else [],
        )
        result: RunResult = agent.run_sync(args.question)
        while result.status == "interrupted":
            decisions = {pending.id: _decide(pending) for pending in result.interruptions}
            result = agent.resume_sync(result.run_id, decisions)
    except RunError as exc:
        print(f"repo-explorer: the run failed: {exc}", file=sys.stderr)
        return 1
    except TracedAgentError as exc:
        print(f"repo-explorer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        tracedagent.flush(5.0)
        if tracer is not None:
            print(tracer.format_span_tree(), file=sys.stderr)
    print(result.output or "")
    return 0
