"""What model calls cost: ``Usage.cost_usd`` from genai-prices, per call (ModelCallEnded) and per run
(RunEnded, RunResult), None for a model without a price or without the package, never an error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tracedagent import Agent, Message, ModelCallEnded, ModelResponse, RunEnded, Usage, _cost
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step

genai_prices = pytest.importorskip("genai_prices")


@pytest.fixture(autouse=True)
def fresh_lookups() -> Iterator[None]:
    _cost.forget()
    yield
    _cost.forget()


def package_price(usage: Usage, model: str, provider: str, **more: int) -> tuple[float, float]:
    """What genai-prices itself says: (total, input)."""
    counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, **more}
    price = genai_prices.calc_price(genai_prices.Usage(**counts), model, provider_id=provider)
    return float(price.total_price), float(price.input_price)


async def run_once(model: ScriptedModel | FunctionModel) -> tuple[RecordingTracer, Usage]:
    tracer = RecordingTracer()
    result = await Agent("coster", model, plugins=[tracer]).run("hello")
    assert result.status == "completed"
    return tracer, result.usage


async def test_a_known_model_costs_what_the_package_says() -> None:
    usage = Usage(1000, 500, requests=1)
    tracer, total = await run_once(ScriptedModel([Step("hi", usage=usage)], name="gpt-4o", provider="openai"))
    cost, input_cost = package_price(usage, "gpt-4o", "openai")
    assert cost == pytest.approx(1000 * 2.5e-6 + 500 * 10e-6)  # so the test means something: $2.50 / $10 per MTok
    (call,) = tracer.of_type(ModelCallEnded)
    (end,) = tracer.of_type(RunEnded)
    assert (call.usage.cost_usd, call.usage.input_cost_usd) == (cost, input_cost)
    assert call.usage.output_cost_usd == pytest.approx(cost - input_cost)
    assert end.usage.cost_usd == total.cost_usd == cost
    assert end.usage.cost_partial is False


async def test_cache_reads_are_priced_at_the_cache_read_rate() -> None:
    usage = Usage(1000, 500, cache_read_tokens=800, requests=1)
    _, total = await run_once(ScriptedModel([Step("hi", usage=usage)], name="gpt-4o", provider="openai"))
    cost, _ = package_price(usage, "gpt-4o", "openai", cache_read_tokens=800)
    assert total.cost_usd == cost
    assert cost < package_price(usage, "gpt-4o", "openai")[0]  # cheaper than 1000 uncached input tokens


async def test_reasoning_tokens_are_priced_as_the_package_prices_them() -> None:
    # sonar-deep-research: $8 per MTok of output, $3 of reasoning
    usage = Usage(1000, 500, reasoning_tokens=400, requests=1)
    model = ScriptedModel([Step("hi", usage=usage)], name="sonar-deep-research", provider="perplexity")
    _, total = await run_once(model)
    cost, _ = package_price(usage, "sonar-deep-research", "perplexity", output_reasoning_tokens=400)
    assert total.cost_usd == cost
    assert cost < package_price(usage, "sonar-deep-research", "perplexity")[0]


async def test_a_run_costs_the_sum_of_its_calls() -> None:
    steps = [
        Step(tool_calls=[("missing_tool", {})], usage=Usage(300, 20, requests=1)),
        Step("done", usage=Usage(400, 30, requests=1)),
    ]
    tracer, total = await run_once(ScriptedModel(steps, name="gpt-4o-mini", provider="openai"))
    calls = [e.usage.cost_usd for e in tracer.of_type(ModelCallEnded)]
    assert len(calls) == 2
    assert all(c is not None and c > 0 for c in calls)
    assert total.cost_usd == pytest.approx(sum(c for c in calls if c is not None))


@pytest.mark.parametrize(
    ("name", "provider"),
    [("no-such-model", "openai"), ("gpt-4o", "no-such-provider"), ("scripted", "scripted"), ("", "")],
)
async def test_an_unknown_model_has_no_cost_and_no_error(name: str, provider: str) -> None:
    tracer, total = await run_once(
        ScriptedModel([Step("hi", usage=Usage(10, 5, requests=1))], name=name, provider=provider)
    )
    (call,) = tracer.of_type(ModelCallEnded)
    assert call.status == "ok"
    assert (call.usage.cost_usd, call.usage.input_cost_usd, total.cost_usd) == (None, None, None)
    assert total.cost_partial is False


async def test_without_the_package_there_is_no_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # import genai_prices raises ImportError
    _, total = await run_once(
        ScriptedModel([Step("hi", usage=Usage(10, 5, requests=1))], name="gpt-4o", provider="openai")
    )
    assert total.cost_usd is None
    assert _cost._package is False  # tried once, remembered


async def test_a_pricing_failure_leaves_the_cost_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("bad price data")

    monkeypatch.setattr(genai_prices, "calc_price", broken)
    tracer, total = await run_once(
        ScriptedModel([Step("hi", usage=Usage(10, 5, requests=1))], name="gpt-4o", provider="openai")
    )
    assert total.cost_usd is None
    assert [e.status for e in tracer.of_type(ModelCallEnded)] == ["ok"]


async def test_price_as_prices_a_scripted_model_as_another() -> None:
    usage = Usage(1000, 500, requests=1)
    _, total = await run_once(ScriptedModel([Step("hi", usage=usage)], price_as="openai:gpt-4o-mini"))
    assert total.cost_usd == package_price(usage, "gpt-4o-mini", "openai")[0]


async def test_estimated_usage_is_priced_and_says_so() -> None:
    _, total = await run_once(FunctionModel(lambda m, r: "hi", price_as="openai:gpt-4o-mini"))
    assert total.estimated is True
    assert total.cost_usd is not None
    assert total.cost_usd > 0


async def test_a_cost_the_model_reported_is_kept() -> None:
    reported = Usage(10, 5, requests=1, cost_usd=0.25)
    model = FunctionModel(
        lambda m, r: ModelResponse(Message.assistant("hi"), reported, "stop"), name="gpt-4o", provider="openai"
    )
    _, total = await run_once(model)
    assert total.cost_usd == 0.25


async def test_the_lookup_is_remembered_per_provider_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real = genai_prices.calc_price

    def counting(usage: object, model_ref: str, **kwargs: object) -> object:
        asked.append(model_ref)
        return real(usage, model_ref, **kwargs)

    monkeypatch.setattr(genai_prices, "calc_price", counting)
    steps = [Step("hi", usage=Usage(10, 5, requests=1))] * 3
    await run_once(ScriptedModel(list(steps), name="no-such-model", provider="openai", per_run=False))
    await run_once(ScriptedModel(list(steps), name="no-such-model", provider="openai"))
    assert asked == ["no-such-model"]  # a miss is asked once, then remembered


# ------------------------------------------------------------------------------------ adding usages


def test_adding_priced_usages_adds_their_costs() -> None:
    total = Usage(10, 5, cost_usd=0.5, input_cost_usd=0.2) + Usage(1, 1, cost_usd=0.25, input_cost_usd=0.05)
    assert (total.cost_usd, total.input_cost_usd, total.cost_partial) == (0.75, pytest.approx(0.25), False)


def test_a_priced_plus_an_unpriced_usage_keeps_the_known_cost_and_says_it_is_partial() -> None:
    priced, unpriced = Usage(10, 5, cost_usd=0.5, input_cost_usd=0.2), Usage(7, 3)
    for total in (priced + unpriced, unpriced + priced):
        assert (total.cost_usd, total.input_cost_usd, total.cost_partial) == (0.5, 0.2, True)
        assert total.input_tokens == 17
    assert ((priced + unpriced) + priced).cost_partial is True  # stays partial


def test_unpriced_usages_stay_unpriced_and_empty_usage_adds_nothing() -> None:
    assert (Usage(1, 1) + Usage(2, 2)).cost_usd is None
    assert (Usage(1, 1) + Usage(2, 2)).cost_partial is False
    priced = Usage(10, 5, cost_usd=0.5, input_cost_usd=0.2)
    started = Usage() + priced  # a run's start, or a call that failed before any token
    assert (started.cost_usd, started.input_cost_usd) == (0.5, 0.2)
    assert (Usage() + priced).cost_partial is False


def test_to_dict_writes_costs_only_when_known() -> None:
    assert set(Usage(1, 1).to_dict()) == {
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "reasoning_tokens",
        "requests",
        "estimated",
    }
    data = Usage(1, 1, cost_usd=0.5, input_cost_usd=0.2, cost_partial=True).to_dict()
    assert (data["cost_usd"], data["input_cost_usd"], data["cost_partial"]) == (0.5, 0.2, True)


# ---------------------------------------------------------------------------------------- hot path


def test_unpriced_test_models_never_import_the_package() -> None:
    """ScriptedModel and FunctionModel (providers scripted and function) are priced only with price_as:
    without it, genai-prices (a fifth of a second to import) is not imported by a run."""
    code = textwrap.dedent(
        """
        import sys
        from tracedagent import Agent
        from tracedagent.testing import FunctionModel, ScriptedModel
        Agent("a", ScriptedModel(["hi"])).run_sync("go")
        Agent("b", FunctionModel(lambda m, r: "hi")).run_sync("go")
        print("genai_prices" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=True
    )
    assert done.stdout.split() == ["False"]
