"""Built-in model providers over httpx, streaming, with retries and trace context.

* :class:`OpenAIChatModel`: any OpenAI-compatible Chat Completions server (OpenAI, vLLM, Ollama,
  llama.cpp server, LiteLLM...), ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``;
* :class:`AnthropicModel`: the Anthropic Messages API, ``ANTHROPIC_API_KEY``;
* :func:`resolve_model`: ``"openai:gpt-4o-mini"`` or ``"anthropic:claude-sonnet-4-5"`` to a model.

Providers are imported on first use, so ``import tracedagent`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._model import Model
from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._anthropic import AnthropicModel
    from ._http import HTTPModel
    from ._openai import OpenAIChatModel

__all__ = ["AnthropicModel", "HTTPModel", "OpenAIChatModel", "resolve_model"]

_LAZY = {"AnthropicModel": "._anthropic", "HTTPModel": "._http", "OpenAIChatModel": "._openai"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracedagent.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def resolve_model(spec: str | Model, **options: Any) -> Model:
    """A model from ``"provider:model"`` (``openai:gpt-4o-mini``, ``anthropic:claude-sonnet-4-5``); a
    :class:`Model` is returned as it is. ``options`` go to the provider's constructor."""
    if not isinstance(spec, str):
        return spec
    provider, _, name = spec.partition(":")
    if not name:
        raise ConfigurationError(
            f"a model is given as provider:model, for example openai:gpt-4o-mini or anthropic:claude-sonnet-4-5, "
            f"not {spec!r}"
        )
    if provider == "openai":
        return __getattr__("OpenAIChatModel")(name, **options)  # type: ignore[no-any-return]
    if provider == "anthropic":
        return __getattr__("AnthropicModel")(name, **options)  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"unknown model provider {provider!r} in {spec!r}: use openai (any OpenAI-compatible server, with "
        "OPENAI_BASE_URL for a local one) or anthropic"
    )
