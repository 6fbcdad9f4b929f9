"""The dashboards' PromQL, written from the Prometheus plugin's metric names (``N``).

Each helper returns plain PromQL text. Matchers are written out, for example ``agent=~"$agent"``;
``by`` lists the labels a sum keeps (none: one series). Rates use Grafana's ``$__rate_interval`` (at least
four scrape intervals, so a rate always has two samples to work with).
"""

from __future__ import annotations

from tracedagent_prometheus import _names as N

__all__ = [
    "AGENT",
    "FAILED",
    "FROM_AGENT",
    "MODEL",
    "N",
    "RATE_INTERVAL",
    "RETRY_TARGET",
    "TOOL",
    "gauge",
    "per_second",
    "quantile",
    "ratio",
    "series",
    "worst",
]

RATE_INTERVAL = "$__rate_interval"

#: Matchers on the dashboards' template variables (multi-valued: Grafana writes ``(a|b)``, or ``.*`` for All).
AGENT = 'agent=~"$agent"'
#: A handoff's agent is the one handing off (tracedagent_handoffs_total has from_agent and to_agent).
FROM_AGENT = 'from_agent=~"$agent"'
TOOL = 'tool=~"$tool"'
MODEL = 'model=~"$model"'
#: A retry's target is a tool or a model: either variable selects it.
RETRY_TARGET = 'target=~"$tool|$model"'
#: Tool call statuses that count as failures (refusals by the breaker or the bulkhead are shown apart).
FAILED = 'status=~"error|timeout"'


def series(metric: str, *matchers: str) -> str:
    """``metric{matcher, ...}``."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def _sum(inner: str, by: tuple[str, ...], op: str = "sum") -> str:
    return f"{op} by ({', '.join(by)}) ({inner})" if by else f"{op}({inner})"


def per_second(metric: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
    """A counter's per-second rate, summed by the labels ``by``."""
    return _sum(f"rate({series(metric, *matchers)}[{RATE_INTERVAL}])", by)


def gauge(metric: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
    """A gauge summed by the labels ``by`` (over processes)."""
    return _sum(series(metric, *matchers), by)


def worst(metric: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
    """A state gauge's highest value by the labels ``by`` (the worst process wins)."""
    return _sum(series(metric, *matchers), by, op="max")


def quantile(q: float, histogram: str, *matchers: str, by: tuple[str, ...] = ()) -> str:
    """The ``q`` quantile of a histogram over the rate interval, by the labels ``by``."""
    return f"histogram_quantile({q}, {per_second(histogram + '_bucket', *matchers, by=('le', *by))})"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator``, one per line (as the panel editor shows them)."""
    return f"{numerator}\n/\n{denominator}"
