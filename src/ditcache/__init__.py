"""ditcache: feature caching for diffusion transformers.

    with ditcache.cached(pipe, ditcache.FORA(interval=3)) as run:
        image = pipe(...).images[0]
    print(run.stats.summary())
"""

from .adapters import Branch, ModelSpec, register_block, register_model
from .engine import Run, apply, cached
from .methods import FORA, L2C, METHODS, ClusCa, NoCache, TaylorSeer, ToCa, TokenCache
from .models.defaults import load_default
from .plan import Action, Plan

__all__ = [
    "FORA", "METHODS", "Action", "Branch", "ClusCa", "ModelSpec", "NoCache", "Plan", "Run", "TaylorSeer", "ToCa",
    "TokenCache", "L2C",
    "apply", "cached", "load_default", "register_block", "register_model",
]
__version__ = "0.1.0"
