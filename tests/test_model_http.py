"""The shared HTTP provider base: Retry-After parsing and settings validation."""

from __future__ import annotations

import email.utils

import pytest

from tracedagent import ConfigurationError
from tracedagent.models import OpenAIChatModel
from tracedagent.models._http import parse_retry_after, retry_after


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("-4") == 0.0
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after-ms": "x", "retry-after": "9"}) == 9.0
    assert retry_after({}) is None


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"base_url": "ftp://example.com"}, "http(s) URL"),
        ({"base_url": "not a url"}, "http(s) URL"),
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"read_timeout": 0}, "read_timeout must be a positive number"),
        ({"max_retries": -1}, "max_retries must be a whole number"),
        ({"max_retries": 1.5}, "max_retries must be a whole number"),
        ({"retry_initial_delay": "fast"}, "retry_initial_delay must be a positive number"),
    ],
)
def test_bad_settings_are_clear_errors(options: dict[str, object], complaint: str) -> None:
    settings = {"base_url": "http://127.0.0.1:9/v1", "api_key": "k", **options}
    with pytest.raises(ConfigurationError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        OpenAIChatModel("m", **settings)  # type: ignore[arg-type]
