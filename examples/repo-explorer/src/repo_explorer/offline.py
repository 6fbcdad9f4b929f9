"""A model for when there is none: it explores the way a person would start, then reports what it found.

It lists the top directory and greps for the question's words (two tool calls in one turn), reads the
lines around the first hit in the file with the most hits, and answers with those findings, saying
plainly that it is a search and not an answer. It is a :class:`tracedagent.testing.FunctionModel`, so
the command, its traces and its tests run offline, through the same loop and tools as a real model.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from tracedagent import Message, ModelRequest, ToolCall
from tracedagent.testing import FunctionModel

__all__ = ["offline_model"]

#: Words a question is made of that say nothing about the code.
_COMMON = """
about above after all also and any are because been before being but can code could did does doing
done each file files for from function functions get got has have how into its just let like make
many more most much not now off once only other our out over own same see should some such than that
the their them then there these they this those through too under until use used uses using very
was way were what when where which while who why will with would you your
"""
_STOPWORDS = frozenset(_COMMON.split())
_MAX_WORDS = 4
_HIT = re.compile(r"^(.+?):(\d+): ")
_ids = itertools.count(1)


def offline_model() -> FunctionModel:
    """The offline stand-in model (``provider`` ``repo-explorer``, ``name`` ``offline``)."""
    return FunctionModel(_explore, name="offline", provider="repo-explorer")


def keywords(question: str) -> list[str]:
    """The words of ``question`` worth searching for: identifiers of 3 letters or more, not stopwords."""
    words: list[str] = []
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", question):
        if word.lower() not in _STOPWORDS and word.lower() not in (w.lower() for w in words):
            words.append(word)
    return words[:_MAX_WORDS]


def _call(name: str, arguments: dict[str, object]) -> ToolCall:
    return ToolCall.of(f"offline_{next(_ids)}", name, arguments)


def _explore(messages: Sequence[Message], request: ModelRequest) -> str | list[ToolCall]:
    asked = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    question = (messages[asked].content or "") if asked >= 0 else ""
    since = messages[asked + 1 :]
    turn = sum(1 for m in since if m.role == "assistant")
    results = {m.name: m for m in since if m.role == "tool" and not m.is_error}
    offered = {spec.name for spec in request.tools}
    words = keywords(question)
    if turn == 0:
        calls = [_call("list_directory", {"path": "."})]
        if words and "grep" in offered:
            calls.append(_call("grep", {"pattern": "|".join(map(re.escape, words)), "ignore_case": True}))
        return calls
    hits = _hits(results.get("grep"))
    if turn == 1 and hits and "read_file" in offered:
        best, lines = _best(hits)
        return [_call("read_file", {"path": best, "start_line": max(1, lines[0] - 3), "max_lines": 12})]
    return _answer(words, hits, results)


def _hits(grep: Message | None) -> dict[str, list[int]]:
    """The line numbers of the hits in a grep answer, by file, in the order grep gave them."""
    found: dict[str, list[int]] = {}
    for line in (grep.content or "").splitlines() if grep is not None else ():
        match = _HIT.match(line)
        if match:
            found.setdefault(match.group(1), []).append(int(match.group(2)))
    return found


def _best(hits: dict[str, list[int]]) -> tuple[str, list[int]]:
    return max(hits.items(), key=lambda item: len(item[1]))


def _answer(words: list[str], hits: dict[str, list[int]], results: dict[str | None, Message]) -> str:
    lines = [
        "(offline: no language model is configured, so this is what a search of the code finds, not an "
        "answer; run with --model PROVIDER:MODEL or set REPO_EXPLORER_MODEL for a real one)",
        "",
    ]
    grep = (results["grep"].content or "") if "grep" in results else ""
    if not words:
        lines.append("The question has no word worth searching for.")
    elif not hits:
        lines.append(f"None of the words {', '.join(words)} appears in the code.")
    else:
        best, best_lines = _best(hits)
        total = sum(len(found) for found in hits.values())
        some = "at least " if "[stopped after" in grep else ""
        lines.append(
            f"The words {', '.join(words)} appear in {some}{total} line(s) of {len(hits)} file(s), "
            f"most often in {best} ({len(best_lines)}):"
        )
        in_best = [line for line in grep.splitlines() if line.startswith(f"{best}:")]
        lines.extend(f"  {line}" for line in in_best[:6])
        read = results.get("read_file")
        if read is not None and read.content:
            text = [line for line in read.content.splitlines() if not line.startswith("[")]
            first = max(1, best_lines[0] - 3)
            lines += ["", f"{best}, from line {first}:", *(f"  {n:>5} | {t}" for n, t in enumerate(text, first))]
    listing = results.get("list_directory")
    if listing is not None and listing.content:
        names = [re.split(r" \(| -> ", line)[0] for line in listing.content.splitlines() if line[:1] != "["]
        lines += ["", f"At the top of the working directory: {', '.join(names[:20])}"]
    return "\n".join(lines)
