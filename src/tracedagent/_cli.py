"""The ``tracedagent`` command: ``demo``, ``run MODULE:AGENT PROMPT`` and ``plugins``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import _plugins
from ._agent import Agent
from ._export import flush
from .exceptions import RunError, TracedAgentError


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
    demo.add_argument("--runs", type=_positive_int, default=6, help="how many runs (default 6)")
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
        "--model",
        metavar="PROVIDER:MODEL",
        help="run the demo agent on a real model instead of the scripted one: openai:gpt-4o-mini, "
        "anthropic:claude-sonnet-4-5, or openai:MODEL with OPENAI_BASE_URL pointing at a local server",
    )

    run = sub.add_parser("run", help="run an agent once: tracedagent run MODULE:AGENT PROMPT")
    run.add_argument("target", metavar="MODULE:AGENT", help="an importable module and the Agent in it")
    run.add_argument("prompt", help="what to ask the agent")

    sub.add_parser("plugins", help="list the plugins that load, where from, their hooks and status")
    return parser


def _load_agent(target: str) -> Agent:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"tracedagent run: expected MODULE:AGENT (for example myapp.agents:support), got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"tracedagent run: cannot import {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"tracedagent run: {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Agent):
        obj = obj()
    if not isinstance(obj, Agent):
        raise SystemExit(f"tracedagent run: {target} is a {type(obj).__name__}, not a tracedagent.Agent")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            model = None
            if args.model:
                from .models import resolve_model

                model = resolve_model(args.model)
            return run_demo(
                runs=args.runs, concurrency=args.concurrency, linger=args.linger, quiet=args.quiet, model=model
            )
        if args.command == "run":
            agent = _load_agent(args.target)
            try:
                result = agent.run_sync(args.prompt)
            except RunError as exc:
                print(f"run failed: {exc}", file=sys.stderr)
                return 1
            finally:
                flush(5.0)
            print(result.output)
            return 0
        return _list_plugins()
    except TracedAgentError as exc:
        print(f"tracedagent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
