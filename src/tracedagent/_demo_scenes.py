"""The demo's scene runs: what ``tracedagent demo`` runs on top of its ``--runs`` trip questions.

Kept apart from :mod:`._demo` so the CLI's help can say them without importing the demo.
"""

from __future__ import annotations

__all__ = ["SCENES", "SCENE_RUNS", "scenes_text"]

#: The runs the demo makes on top of ``--runs`` trip questions, one scene per stage it shows off.
SCENES: tuple[tuple[str, int], ...] = (
    ("compaction", 1),  # a long earlier conversation, summarised before the first model call
    ("approval", 1),  # a booking that pauses for a person and is resumed
    ("backpressure", 1),  # a burst of fare quotes: 2 in flight, 2 queued, 2 refused
    ("retry", 1),  # a flaky exchange-rate service
    ("handoff", 1),  # a flight change: the trip desk hands the run to the rebooking agent
    ("structured output", 1),  # a trip card (output_type=TripCard): one answer corrected (scripted model only)
    ("circuit breaker", 4),  # a seat map outage: 3 runs open the breaker, 1 after it closes again
)
SCENE_RUNS = sum(count for _, count in SCENES)


def scenes_text(scripted: bool = True) -> str:
    """The scene runs, as the help and the summary say them: ``compaction 1, ..., circuit breaker 4``
    (on another model than the scripted one, without the structured-output scene)."""
    return ", ".join(f"{name} {count}" for name, count in SCENES if scripted or name != "structured output")
