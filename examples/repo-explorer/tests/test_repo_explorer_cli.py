"""The ``repo-explorer`` command: offline by default, a real model with --model or the environment."""

from __future__ import annotations

import io
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import repo_explorer.cli
from repo_explorer.cli import main
from tracedagent.testing import ScriptedModel, Step


def test_offline_by_default(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "Where is the VAT rate defined?", "--root", str(repo)]) == 0
    out, err = capsys.readouterr()
    assert "no model given (--model or REPO_EXPLORER_MODEL); running offline" in err
    assert out.startswith("(offline: no language model is configured")
    assert "src/shop/pricing.py:1: VAT_RATE = 0.2" in out


def test_trace_prints_the_span_tree(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "VAT?", "--root", str(repo), "--trace"]) == 0
    err = capsys.readouterr().err
    assert err.endswith(
        "run repo-explorer [completed]\n"
        "  model repo-explorer:offline [ok]\n"
        "  tool list_directory [ok]\n"
        "  tool grep [ok]\n"
        "  model repo-explorer:offline [ok]\n"
        "  tool read_file [ok]\n"
        "  model repo-explorer:offline [ok]\n"
    )


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for tracedagent.models.resolve_model: record the spec, answer with a scripted model."""
    specs: list[str] = []

    def resolve(spec: str, **options: Any) -> ScriptedModel:
        specs.append(spec)
        return ScriptedModel([Step(tool_calls=[("grep", {"pattern": "VAT_RATE ="})]), "VAT_RATE is 0.2."])

    monkeypatch.setattr(repo_explorer.cli, "resolve_model", resolve)
    return specs


def test_a_real_model_from_the_option(repo: Path, resolved: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "VAT?", "--root", str(repo), "--model", "openai:gpt-4o-mini"]) == 0
    assert resolved == ["openai:gpt-4o-mini"]
    assert capsys.readouterr().out == "VAT_RATE is 0.2.\n"


def test_a_real_model_from_the_environment(
    repo: Path, resolved: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REPO_EXPLORER_MODEL", "anthropic:claude-sonnet-4-5")
    assert main(["ask", "VAT?", "--root", str(repo)]) == 0
    assert resolved == ["anthropic:claude-sonnet-4-5"]
    assert "running offline" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "gpt-4o-mini"], "a model is given as provider:model"),
        (["--model", "acme:big"], "unknown model provider 'acme'"),
        (["--root", "/no/such/dir"], "cannot be used"),
    ],
)
def test_bad_settings_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "VAT?", *argv]) == 2
    assert message in capsys.readouterr().err


def writing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(spec: str, **options: Any) -> ScriptedModel:
        return ScriptedModel([Step(tool_calls=[("write_file", {"path": "NOTES.md", "content": "hi\n"})]), "Done."])

    monkeypatch.setattr(repo_explorer.cli, "resolve_model", resolve)


@pytest.mark.parametrize(("answer", "written"), [("y\n", True), ("n\n", False), ("", False)])
def test_each_write_is_put_to_the_user(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: str, written: bool
) -> None:
    writing_model(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    assert main(["ask", "note it", "--root", str(repo), "--model", "x:y", "--allow-write"]) == 0
    assert (repo / "NOTES.md").exists() is written
    assert "The agent asks to run write_file(path='NOTES.md', content='hi\\n')" in capsys.readouterr().err


def test_the_command_is_installed(repo: Path) -> None:
    [script] = entry_points(group="console_scripts", name="repo-explorer")
    assert script.value == "repo_explorer.cli:main"
    done = subprocess.run(
        [sys.executable, "-m", "repo_explorer", "ask", "Where is VAT_RATE defined?", "--root", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "most often in src/shop/pricing.py" in done.stdout
