"""Profiles: tune a pipeline to a quality budget (``tune``, in ``ditcache.bench.tune``) and the JSON file that
records the answer (``Profile``, in ``ditcache.engine.profile``), which ``ditcache.cached(pipe, "profile.json")``
applies. This module gathers both for users.
"""

from .bench.tune import KNOBS, LEARNED, check_budget, knob_settings, search, tune
from .engine.profile import FORMAT, Profile, as_profile, fingerprints

__all__ = ["FORMAT", "KNOBS", "LEARNED", "Profile", "as_profile", "check_budget", "fingerprints", "knob_settings",
           "search", "tune"]
