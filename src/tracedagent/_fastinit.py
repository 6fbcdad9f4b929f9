"""A faster ``__init__`` for the frozen, slotted dataclasses that every run builds (events, messages).

The ``__init__`` that ``dataclass(frozen=True)`` generates stores each field with
``object.__setattr__(self, name, value)``, which on CPython 3.11 costs about 0.1 us a field: a 20-field
event took 3 us to build, more than dispatching it to four tracers. :func:`fast_init` swaps in an
``__init__`` with the very same signature (names, kinds, defaults, annotations) that stores each field
through its slot's descriptor, about twice as fast. Nothing else changes: the class stays frozen
(assignment raises ``FrozenInstanceError``), and equality, hashing, ``repr``, ``dataclasses.replace``,
pickling and ``inspect.signature`` are the dataclass's own.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, TypeVar

__all__ = ["fast_init"]

C = TypeVar("C", bound=type)


def fast_init(cls: C) -> C:
    """Give the frozen, slotted dataclass ``cls`` an ``__init__`` that stores through slot descriptors."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init() takes a frozen, slotted dataclass without __post_init__, not {cls!r}")
    original = cls.__init__  # type: ignore[misc]
    signature = inspect.signature(original)
    namespace: dict[str, Any] = {}
    arguments: list[str] = []
    star = False
    for name, parameter in list(signature.parameters.items())[1:]:  # skip self
        if parameter.kind is parameter.KEYWORD_ONLY and not star:
            arguments.append("*")
            star = True
        elif parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise TypeError(f"fast_init(): {cls.__name__}.__init__ has an unexpected parameter {parameter}")
        if parameter.default is parameter.empty:
            arguments.append(name)
        else:
            namespace[f"_default_{name}"] = parameter.default
            arguments.append(f"{name}=_default_{name}")
    body: list[str] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            raise TypeError(f"fast_init(): {cls.__name__}.{field.name} is init=False")
        slot = inspect.getattr_static(cls, field.name)
        if not isinstance(slot, types.MemberDescriptorType):
            raise TypeError(f"fast_init(): {cls.__name__}.{field.name} is not a slot")
        namespace[f"_set_{field.name}"] = slot.__set__
        value = field.name
        if field.default_factory is not dataclasses.MISSING:
            # The generated __init__ marks "no value given" with the sentinel its signature shows.
            namespace[f"_factory_{field.name}"] = field.default_factory
            value = f"_factory_{field.name}() if {field.name} is _default_{field.name} else {field.name}"
        body.append(f"    _set_{field.name}(self, {value})")
    source = f"def __init__(self, {', '.join(arguments)}):\n" + ("\n".join(body) or "    pass") + "\n"
    # As dataclasses builds __init__, with a file name that tells profilers and tracebacks whose it is.
    exec(compile(source, f"<fast_init {cls.__module__}.{cls.__qualname__}>", "exec"), namespace)
    init = namespace["__init__"]
    init.__qualname__ = original.__qualname__
    init.__module__ = original.__module__
    init.__annotations__ = dict(original.__annotations__)
    init.__doc__ = original.__doc__
    if inspect.signature(init) != signature:
        raise AssertionError(f"fast_init(): {cls.__name__}.__init__ would change its signature")
    cls.__init__ = init  # type: ignore[misc]
    return cls
