"""What a model call cost: its usage priced with the ``genai-prices`` package's offline data.

The package is optional (``pip install 'tracedagent[cost]'``) and imported on the first model call
that could be priced, never when tracedagent is imported. Without it, for a provider or model it has
no price for, or if pricing fails in any way, the cost stays None: never an error.

The price is looked up by the model's ``provider`` and ``name`` (``openai``, ``gpt-4o-mini``), or by its
``price_as`` attribute when it has one (``"openai:gpt-4o-mini"``: price a scripted model, or a
deployment whose name the package does not know, as that model). Whether a model has a price is
remembered per (provider, model), so an unpriced model costs one dictionary lookup a call.

The usage is given to the package as it counts tokens: ``input_tokens`` includes the cache reads
(``cache_read_tokens``, priced at the cache-read rate where the model has one) and ``output_tokens``
the reasoning tokens (``output_reasoning_tokens``, at the reasoning rate where there is one).
"""

from __future__ import annotations

from typing import Any

from ._messages import Usage

__all__ = ["forget", "priced"]

#: How many (provider, model, price_as) answers are remembered; past that, a model is looked up each call.
MAX_MODELS = 1024

#: (provider, model, price_as) -> the package's (model_ref, provider_id), or None: no price.
_refs: dict[tuple[str, str, str | None], tuple[str, str | None] | None] = {}
#: The providers of tracedagent's own test models: priced only with ``price_as`` (and the package, whose
#: import takes a fifth of a second, is not imported for them).
UNPRICED_PROVIDERS = frozenset({"scripted", "function"})
#: The genai_prices module once imported; False when it cannot be.
_package: Any = None


def _calc_price() -> Any:
    """The package's ``calc_price``, or None when it is not installed (tried once)."""
    global _package
    if _package is None:
        try:
            import genai_prices
        except ImportError:
            _package = False
        else:
            _package = genai_prices
    return _package.calc_price if _package else None


def _ref(provider: str, model: str, price_as: str | None) -> tuple[str, str | None]:
    if price_as:
        provider_id, _, model_ref = price_as.rpartition(":")
        return model_ref, provider_id or None
    return model, provider


def _price(calc: Any, ref: tuple[str, str | None], usage: Usage) -> Any:
    counts: dict[str, int] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    if usage.cache_read_tokens:
        counts["cache_read_tokens"] = usage.cache_read_tokens
    if usage.reasoning_tokens:
        counts["output_reasoning_tokens"] = usage.reasoning_tokens
    return calc(_package.Usage(**counts), ref[0], provider_id=ref[1])


def priced(provider: str, model: str, price_as: str | None, usage: Usage) -> Usage:
    """``usage`` with ``cost_usd`` and ``input_cost_usd`` set, or ``usage`` itself when the price is unknown."""
    key = (provider, model, price_as)
    if key in _refs:
        ref = _refs[key]
        if ref is None:
            return usage
    elif price_as is None and provider in UNPRICED_PROVIDERS:
        _remember(key, None)
        return usage
    else:
        ref = _ref(provider, model, price_as)
    calc = _calc_price()
    if calc is None:
        _remember(key, None)
        return usage
    try:
        price = _price(calc, ref, usage)
    except LookupError:  # the package knows no such provider or model
        _remember(key, None)
        return usage
    except Exception:  # bad data, a changed package: no price, and the run goes on
        return usage
    _remember(key, ref)
    return Usage(
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.reasoning_tokens,
        usage.requests,
        usage.estimated,
        float(price.total_price),
        float(price.input_price),
    )


def _remember(key: tuple[str, str, str | None], ref: tuple[str, str | None] | None) -> None:
    if len(_refs) < MAX_MODELS:
        _refs[key] = ref


def forget() -> None:
    """Forget what was looked up and whether the package imports (for tests that install or remove it)."""
    global _package
    _refs.clear()
    _package = None
