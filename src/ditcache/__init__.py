"""ditcache: feature caching for diffusion transformers.

    with ditcache.cached(pipe, ditcache.FORA(interval=3)) as run:
        image = pipe(...).images[0]
    print(run.stats.summary())
"""

from . import forecast
from .adapters import Branch, ModelSpec, register_block, register_model
from .engine import Run, apply, cached, estimate_memory
from .methods import (
    FORA,
    L2C,
    L2P,
    METHODS,
    ClusCa,
    FreqCa,
    HyCa,
    MeanCache,
    NoCache,
    SpeCa,
    TaylorSeer,
    ToCa,
    TokenCache,
)
from .models.defaults import load_default
from .plan import Action, Plan

__all__ = [
    "FORA", "METHODS", "Action", "Branch", "ClusCa", "FreqCa", "HyCa", "ModelSpec", "NoCache", "Plan", "Run", "SpeCa",
    "TaylorSeer", "ToCa", "TokenCache", "L2C", "L2P", "MeanCache", "forecast",
    "apply", "cached", "estimate_memory", "load_default", "register_block", "register_model",
]
__version__ = "0.1.0"
