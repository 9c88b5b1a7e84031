"""A profile: the JSON file ``ditcache tune`` writes (``ditcache.bench.tune``), and applying it.

It holds the chosen method as text, what it was measured on (each transformer's fingerprint, the pipeline class,
the steps, the latent shape the transformer saw and the resolution asked for, the dtype) and what was measured
(FLOP and wall-clock speedups, quality with 95% bootstrap intervals), per method too.
``ditcache.cached(pipe, "profile.json")`` applies it: another transformer is refused when it is applied, another
step count or resolution at its first model call, each naming the difference; ``Profile.load(path, force=True)``
(the CLI's ``--force``) applies it anyway with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..artifact import fingerprint
from ..methods import parse_method
from .targets import _denoisers, _uncompiled

FORMAT = "ditcache-profile-1"


# --------------------------------------------------------------------------- the profile


@dataclass
class Profile:
    method_text: str                   # the chosen method, as `ditcache methods` text
    measured_at: dict                  # transformers' fingerprints, pipeline, steps, latent shape, size, dtype
    measured: dict                     # the chosen method's speed and quality, with intervals
    budget: str = ""
    per_method: dict = field(default_factory=dict)   # method name -> its best setting and measures, or why none
    search: list = field(default_factory=list)       # every setting evaluated: text, measures, met the budget
    versions: dict = field(default_factory=dict)
    path: str | None = None            # where it was loaded from (not saved)
    force: bool = False                # apply despite a mismatch, with a warning (not saved)
    _bound: object = field(default=None, repr=False, compare=False)  # the last target bind() checked

    # ----------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {"format": FORMAT, "method": self.method_text, "budget": self.budget,
                "measured_at": self.measured_at, "measured": self.measured, "per_method": self.per_method,
                "search": self.search, "versions": self.versions}

    def save(self, path: str | Path) -> Path:
        """Written to a temporary file beside ``path`` and renamed: never half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_json(), indent=1, default=_plain))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, force: bool = False) -> Profile:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no profile at {path}; write one with `ditcache tune --pipeline ... --out "
                                    f"{path}`") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a readable ditcache profile ({type(e).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise ValueError(f"{path} is not a ditcache profile (format {found!r}, "
                             f"expected {FORMAT!r})")
        try:
            return cls(data["method"], data["measured_at"], data["measured"], data.get("budget", ""),
                       data.get("per_method", {}), data.get("search", []), data.get("versions", {}),
                       path=str(path), force=force)
        except KeyError as e:
            raise ValueError(f"{path}: a profile without {e}") from None

    # ----------------------------------------------------------------- applying
    def method(self):
        return parse_method(self.method_text)

    def _mismatch(self, what: str) -> None:
        where = f"profile {self.path}" if self.path else "this profile"
        if self.force:
            warnings.warn(f"{where}: {what}; applied anyway (forced)", stacklevel=3)
            return
        raise ValueError(f"{where} does not fit: {what}; tune again for this one, or force it "
                         "(--force, Profile.load(path, force=True))")

    def bind(self, target):
        """The profile's method for ``target`` (a pipeline or transformer), once its transformers are the
        ones it was measured on (checked once per target: a fingerprint hashes every weight)."""
        if self._bound is target:
            return self.method()
        got = fingerprints(target)
        want = self.measured_at.get("transformers", {})
        for name in sorted(set(got) | set(want)):
            if got.get(name) != want.get(name):
                self._mismatch(f"it was measured on {name} {want.get(name)}, this is {got.get(name)}")
                break
        self._bound = target
        return self.method()

    def check_call(self, ctx, inputs: dict) -> None:
        """At a generation's first model call: the step count and the latent shape it was measured at."""
        steps = self.measured_at.get("num_steps")
        if steps is not None and ctx.num_steps != steps:
            self._mismatch(f"it was measured at {steps} steps, this generation has {ctx.num_steps}")
        shape = self.measured_at.get("latent_shape")
        x = inputs.get("hidden_states")
        if shape is not None and isinstance(x, torch.Tensor) and list(x.shape[1:]) != list(shape):
            self._mismatch(f"it was measured at resolution {_size(self.measured_at)} (latents {tuple(shape)}), "
                           f"this generation's latents are {tuple(x.shape[1:])}")

    def check_options(self, steps: int | None, height: int | None, width: int | None,
                      num_frames: int | None) -> None:
        """Before loading anything: the command line's steps and size against the profile's."""
        at = self.measured_at
        if steps is not None and at.get("steps") not in (None, steps):
            self._mismatch(f"it was measured at {at['steps']} steps, --steps is {steps}")
        for name, value in (("height", height), ("width", width), ("num_frames", num_frames)):
            if value is not None and at.get(name) is not None and at[name] != value:
                self._mismatch(f"it was measured at {name} {at[name]}, --{name.replace('_', '-')} is {value}")


def _size(at: dict) -> str:
    if at.get("height") is None:
        return "the pipeline's default size"
    return f"{at['height']}x{at['width']}" + (f", {at['num_frames']} frames" if at.get("num_frames") else "")


def _plain(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return str(x)


def as_profile(method) -> Profile | None:
    """A Profile, or a path to one (text or Path ending in .json) loaded; None for anything else."""
    if isinstance(method, Profile):
        return method
    if isinstance(method, (str, os.PathLike)) and str(method).endswith(".json"):
        return Profile.load(method)
    return None


def fingerprints(target) -> dict[str, str]:
    """Each transformer of a pipeline (``transformer``, ``transformer_2``, ...) or the bare model: its
    fingerprint (class and a hash of config and weights, ``ditcache.artifact.fingerprint``)."""
    if isinstance(target, torch.nn.Module):
        return {"transformer": fingerprint(_uncompiled(target))}
    return {name: fingerprint(_uncompiled(getattr(target, name))) for name in _denoisers(target)}
