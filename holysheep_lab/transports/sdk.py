"""Our errors as the SDKs' own, so an SDK never retries or rewraps what the call flow decided.

The openai and anthropic SDKs retry *any* exception a transport raises, max_retries times with
back-off, then wrap it in their APIConnectionError: a refused call would be refused three times
(three 'blocked' rows, seconds of sleeping) before it surfaced as a connection error. That is
what the SDKs on legacy httpx do (openai < 3, anthropic < 1), and openai 3.0-3.14 on httpx2;
later 3.x releases retry only httpx2's transport errors. Every one of them lets its own base
error through untouched, unretried, so our errors also become instances of it (of whichever SDK
is loaded): `except hs.BudgetExceededError` and `except openai.OpenAIError` both catch them, and
`create()` raises the refusal itself. The flow has already retried what it should.
"""

from __future__ import annotations

import sys

from holysheep_lab.errors import HolySheepError

__all__ = ["SDK_BASE_ERRORS", "not_retried_by_sdks"]

#: (module, base error) of each SDK whose retry loop a transport error passes through.
SDK_BASE_ERRORS = (("openai", "OpenAIError"), ("anthropic", "AnthropicError"))


def _sdk_bases() -> tuple[type[BaseException], ...]:
    # Only SDKs already imported: the caller's SDK is, and importing one here would cost seconds.
    found = (getattr(sys.modules.get(module), name, None) for module, name in SDK_BASE_ERRORS)
    return tuple(base for base in found if isinstance(base, type) and issubclass(base, Exception))


_FINAL_CLASSES: dict[tuple[type[HolySheepError], tuple[type[BaseException], ...]], type[HolySheepError]] = {}


def _final_class(cls: type[HolySheepError], bases: tuple[type[BaseException], ...]) -> type[HolySheepError]:
    """One subclass per (error, SDK bases): the same class every time, so `except` clauses agree."""
    key = (cls, bases)
    final = _FINAL_CLASSES.get(key)
    if final is None:
        final = _FINAL_CLASSES.setdefault(key, type(cls.__name__, (cls, *bases), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}))
    return final


def not_retried_by_sdks(exc: HolySheepError) -> None:
    """Make `exc` also an instance of every loaded SDK's base error (in place)."""
    bases = tuple(b for b in _sdk_bases() if not isinstance(exc, b))
    if bases:
        exc.__class__ = _final_class(type(exc), bases)
