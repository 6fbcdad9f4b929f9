"""``@tool``: schemas from annotations, descriptions from docstrings, validation, results, timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import threading
from typing import Annotated, Any, Literal

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracedagent import (
    Agent,
    ToolArgumentsError,
    ToolCall,
    ToolCallEnded,
    ToolDefinitionError,
    ToolTimeout,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(pydantic.BaseModel):
    x: int
    y: int


class Shape(pydantic.BaseModel):
    name: str
    points: list[Point]


@dataclasses.dataclass
class Box:
    width: int
    label: str


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# ----------------------------------------------------------------------------------------- schema


def test_schema_of_plain_types_and_defaults() -> None:
    @tool
    def search(query: str, limit: int = 10, exact: bool = False, cutoff: float | None = None) -> str:
        return query

    assert search.name == "search"
    assert search.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "exact": {"type": "boolean", "default": False},
            "cutoff": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
        },
        "required": ["query"],
    }
    assert search.spec.parameters == search.parameters


def test_schema_of_lists_literals_enums_and_nested_models() -> None:
    @tool
    def draw(
        shape: Shape,
        color: Color,
        mode: Literal["fill", "stroke"] = "fill",
        tags: list[str] | None = None,
        sizes: list[int] | None = None,
    ) -> str:
        return "drawn"

    params = draw.parameters
    assert params["required"] == ["shape", "color"]
    props = params["properties"]
    assert props["shape"] == {"$ref": "#/$defs/Shape"}
    assert props["color"] == {"$ref": "#/$defs/Color"}
    assert props["mode"] == {"type": "string", "enum": ["fill", "stroke"], "default": "fill"}
    assert props["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert props["sizes"]["anyOf"][0] == {"type": "array", "items": {"type": "integer"}}
    defs = params["$defs"]
    assert defs["Color"] == {"type": "string", "enum": ["red", "green"]}
    assert defs["Shape"]["required"] == ["name", "points"]
    assert defs["Shape"]["properties"]["points"] == {"type": "array", "items": {"$ref": "#/$defs/Point"}}
    assert defs["Point"]["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}
    # pydantic's generated titles are noise to a model
    assert "title" not in json.dumps(params)


def test_a_tool_without_arguments_has_an_empty_object_schema() -> None:
    @tool
    def now() -> str:
        return "noon"

    assert now.parameters == {"type": "object", "properties": {}}
    assert now.validate("") == {}
    assert now.validate("{}") == {}


def test_descriptions_come_from_the_docstring_and_its_args_section() -> None:
    @tool
    def book(city: str, nights: int, guests: int = 1) -> str:
        """Book a hotel room.

        Only hotels with free cancellation are considered.

        Args:
            city: The city to stay in. Use the English
                name, for example "Munich" rather
                than "München".
            nights (int): How many nights.
            guests: Number of guests.

        Returns:
            The booking reference.
        """
        return "ref"

    assert book.description == "Book a hotel room.\n\nOnly hotels with free cancellation are considered."
    props = book.parameters["properties"]
    assert props["city"]["description"] == (
        'The city to stay in. Use the English name, for example "Munich" rather than "München".'
    )
    assert props["nights"]["description"] == "How many nights."
    assert props["guests"]["description"] == "Number of guests."
    assert "booking reference" not in json.dumps(book.parameters)


def test_name_and_description_can_be_given() -> None:
    @tool(name="web.search", description="Search the web.")
    def anything(q: str) -> str:
        """Ignored docstring."""
        return q

    assert (anything.name, anything.description) == ("web.search", "Search the web.")
    assert anything.spec.name == "web.search"


def test_a_function_without_docstring_has_an_empty_description() -> None:
    @tool
    def bare(x: int) -> int:
        return x

    assert bare.description == ""
    assert "description" not in bare.parameters["properties"]["x"]


def test_the_tool_is_still_callable_directly() -> None:
    assert add(2, 3) == 5


# ----------------------------------------------------------------------------- definition errors


def test_missing_annotation_is_a_definition_error() -> None:
    def untyped(a, b: int) -> int:  # type: ignore[no-untyped-def]
        return b

    with pytest.raises(ToolDefinitionError, match="'a' has no type annotation"):
        tool(untyped)


def test_star_args_are_a_definition_error() -> None:
    def star(*values: int) -> int:
        return sum(values)

    def double_star(**options: str) -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match=r"\*values"):
        tool(star)
    with pytest.raises(ToolDefinitionError, match=r"options"):
        tool(double_star)


@pytest.mark.parametrize("name", ["has space", "x" * 65, "semi;colon", "ünï", "a/b"])
def test_bad_names_are_a_definition_error(name: str) -> None:
    def f() -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="name"):
        tool(name=name)(f)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ToolDefinitionError, match="<lambda>"):
        tool(lambda: "")
    assert tool(name="answer")(lambda: "42").name == "answer"


@pytest.mark.parametrize("timeout", [0, -1, -0.5, float("nan")])
def test_bad_timeouts_are_a_definition_error(timeout: float) -> None:
    def f() -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="timeout"):
        tool(timeout=timeout)(f)


def test_unresolvable_annotations_are_a_definition_error() -> None:
    def f(x: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821
        return ""

    with pytest.raises(ToolDefinitionError, match="annotations"):
        tool(f)


def test_tool_needs_a_callable() -> None:
    with pytest.raises(ToolDefinitionError):
        tool()(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- validation


async def test_invalid_arguments_and_unknown_tools_go_back_to_the_model(tracer: RecordingTracer) -> None:
    calls = [
        ToolCall("wrong-type", "add", '{"a": "one", "b": 2}'),
        ToolCall("missing", "add", '{"a": 1}'),
        ToolCall("not-json", "add", "{a: 1, b: 2"),
        ToolCall("unknown", "subtract", '{"a": 1, "b": 2}'),
        ToolCall("fine", "add", '{"a": 1, "b": 2}'),
    ]
    model = ScriptedModel([calls, "corrected"])
    result = await Agent("calc", model, tools=[add]).run("sums")

    assert result.output == "corrected"
    assert result.status == "completed"
    sent_back = {m.tool_call_id: m for m in model.requests[1].messages if m.role == "tool"}
    assert [m.tool_call_id for m in model.requests[1].messages if m.role == "tool"] == [c.id for c in calls]
    assert {k: m.is_error for k, m in sent_back.items()} == {
        "wrong-type": True,
        "missing": True,
        "not-json": True,
        "unknown": True,
        "fine": False,
    }
    assert "a: Input should be a valid integer" in (sent_back["wrong-type"].content or "")
    assert "b: Field required" in (sent_back["missing"].content or "")
    assert "JSON" in (sent_back["not-json"].content or "")
    assert "no tool 'subtract'" in (sent_back["unknown"].content or "")
    assert "add" in (sent_back["unknown"].content or "")  # it names the tools there are
    assert sent_back["fine"].content == "3"

    ends = {e.call_id: e for e in tracer.of_type(ToolCallEnded)}
    assert {k: e.status for k, e in ends.items()} == {
        "wrong-type": "error",
        "missing": "error",
        "not-json": "error",
        "unknown": "error",
        "fine": "ok",
    }
    assert {k: e.error.type for k, e in ends.items() if e.error is not None} == {
        "wrong-type": "ToolArgumentsError",
        "missing": "ToolArgumentsError",
        "not-json": "ToolArgumentsError",
        "unknown": "UnknownToolError",
    }
    assert ends["wrong-type"].result == sent_back["wrong-type"].content


def test_validate_coerces_and_drops_nothing_it_needs() -> None:
    assert add.validate('{"a": 1, "b": 2}') == {"a": 1, "b": 2}
    assert add.validate('{"a": "4", "b": 2.0}') == {"a": 4, "b": 2}
    with pytest.raises(ToolArgumentsError, match="fractional"):
        add.validate('{"a": 1.5, "b": 2}')
    with pytest.raises(ToolArgumentsError):
        add.validate("[1, 2]")


def test_nested_models_are_validated_into_objects() -> None:
    @tool
    def area(shape: Shape, color: Color) -> str:
        return ""

    values = area.validate(json.dumps({"shape": {"name": "tri", "points": [{"x": 0, "y": 1}]}, "color": "red"}))
    assert values["shape"] == Shape(name="tri", points=[Point(x=0, y=1)])
    assert values["color"] is Color.RED
    with pytest.raises(ToolArgumentsError, match=r"shape\.points\.0\.y"):
        area.validate(json.dumps({"shape": {"name": "tri", "points": [{"x": 0}]}, "color": "red"}))
    with pytest.raises(ToolArgumentsError, match="color"):
        area.validate(json.dumps({"shape": {"name": "tri", "points": []}, "color": "blue"}))


@given(
    st.one_of(
        st.text(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        ).map(json.dumps),
        st.fixed_dictionaries(
            {},
            optional={
                "a": st.integers() | st.floats() | st.text() | st.booleans() | st.none(),
                "b": st.integers() | st.floats() | st.text() | st.booleans() | st.none(),
            },
        ).map(lambda d: json.dumps(d, allow_nan=True)),
    )
)
def test_arbitrary_arguments_validate_to_ints_or_raise_tool_arguments_error(arguments: str) -> None:
    error: ToolArgumentsError | None = None
    try:
        values = add.validate(arguments)
    except ToolArgumentsError as exc:  # anything else fails the test
        error, values = exc, {}
    if error is not None:
        assert error.tool == "add"
        assert str(error).startswith("tool 'add'")
        return
    assert set(values) == {"a", "b"}
    assert all(isinstance(v, int) for v in values.values())


# ------------------------------------------------------------------------------------- invocation


async def test_sync_and_async_tools_are_invoked() -> None:
    @tool
    async def async_add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert not add.is_async
    assert async_add.is_async
    assert await add.invoke('{"a": 2, "b": 3}') == "5"
    assert await async_add.invoke('{"a": 2, "b": 3}') == "5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ('{"already": "json text"}', '{"already": "json text"}'),
        ({"k": [1, 2], "n": None}, {"k": [1, 2], "n": None}),
        ([1, "two", 3.5], [1, "two", 3.5]),
        (42, 42),
        (True, True),
        (None, None),
        (Point(x=1, y=2), {"x": 1, "y": 2}),
        (Box(width=3, label="b"), {"width": 3, "label": "b"}),
        ({"nested": Point(x=0, y=0)}, {"nested": {"x": 0, "y": 0}}),
    ],
)
async def test_return_values_are_serialised(value: Any, expected: Any) -> None:
    @tool
    def give() -> Any:
        return value

    text = await give.invoke("{}")
    assert isinstance(text, str)
    if isinstance(value, str):
        assert text == expected
    else:
        assert json.loads(text) == expected


async def test_unserialisable_results_fall_back_to_str() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque thing"

    @tool
    def give() -> Any:
        return Opaque()

    assert await give.invoke("{}") == "opaque thing"


async def test_results_reach_the_model_and_the_end_event(tracer: RecordingTracer) -> None:
    @tool
    def measure() -> Box:
        return Box(width=7, label="crate")

    model = ScriptedModel([ToolCall("m", "measure"), "done"])
    await Agent("a", model, tools=[measure]).run("go")

    tool_message = model.requests[1].messages[-1]
    assert json.loads(tool_message.content or "") == {"width": 7, "label": "crate"}
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.result == tool_message.content


# ---------------------------------------------------------------------------------------- timeout


async def test_an_async_tool_past_its_timeout_is_cancelled_and_ends_timeout(tracer: RecordingTracer) -> None:
    cancelled = asyncio.Event()

    @tool(timeout=0.01)
    async def stuck() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    model = ScriptedModel([ToolCall("s", "stuck"), "gave up"])
    async with asyncio.timeout(GUARD_S):
        result = await Agent("a", model, tools=[stuck]).run("go")

    assert result.output == "gave up"
    assert cancelled.is_set()
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "timeout"
    assert end.error is not None
    assert end.error.type == "ToolTimeout"
    tool_message = model.requests[1].messages[-1]
    assert tool_message.is_error
    assert "timeout of 0.01s" in (tool_message.content or "")


async def test_a_sync_tool_past_its_timeout_ends_timeout_and_its_thread_finishes_later(
    tracer: RecordingTracer,
) -> None:
    release, finished = threading.Event(), threading.Event()

    @tool(timeout=0.01)
    def stuck() -> str:
        release.wait(GUARD_S)
        finished.set()
        return "late"

    model = ScriptedModel([ToolCall("s", "stuck"), "gave up"])
    try:
        async with asyncio.timeout(GUARD_S):
            result = await Agent("a", model, tools=[stuck]).run("go")
        assert not finished.is_set()  # the run went on while the thread was still busy
    finally:
        release.set()
    assert await asyncio.to_thread(finished.wait, GUARD_S)

    assert result.output == "gave up"
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout"]


async def test_invoke_raises_tool_timeout() -> None:
    @tool(timeout=0.01)
    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    with pytest.raises(ToolTimeout) as caught:
        await stuck.invoke("{}")
    assert caught.value.status == "timeout"
    assert caught.value.tool == "stuck"


async def test_a_tool_within_its_timeout_is_ok(tracer: RecordingTracer) -> None:
    @tool(timeout=60)
    async def quick() -> str:
        return "quick"

    await Agent("a", ScriptedModel([ToolCall("q", "quick"), "done"]), tools=[quick]).run("go")
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok"]


def test_annotated_constraints_reach_the_schema_and_the_validation() -> None:
    @tool
    def page(number: Annotated[int, pydantic.Field(ge=1, le=10)]) -> int:
        """A page."""
        return number

    assert page.parameters["properties"]["number"]["minimum"] == 1
    assert page.parameters["properties"]["number"]["maximum"] == 10
    assert page.validate('{"number": 3}') == {"number": 3}
    with pytest.raises(ToolArgumentsError, match="greater than or equal to 1"):
        page.validate('{"number": 0}')
