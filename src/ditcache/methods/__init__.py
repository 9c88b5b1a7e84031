"""The method registry: one file per method, each a config dataclass whose ``plan`` gives per-site plans."""

from __future__ import annotations

from .fora import FORA
from .nocache import NoCache
from .taylorseer import TaylorSeer

METHODS: dict[str, type] = {
    "none": NoCache,
    "fora": FORA,
    "taylorseer": TaylorSeer,
}


def resolve_method(method):
    """A method config, or the registry name of one (built with its documented defaults)."""
    if isinstance(method, str):
        try:
            return METHODS[method.lower()]()
        except KeyError:
            raise KeyError(f"unknown method {method!r}; known methods: {sorted(METHODS)}") from None
    if method is None:
        return NoCache()
    if not callable(getattr(method, "plan", None)):
        raise TypeError(f"not a ditcache method: {method!r} (expected one of {sorted(METHODS)} or its config)")
    method.validate()
    return method


__all__ = ["FORA", "METHODS", "NoCache", "TaylorSeer", "resolve_method"]
