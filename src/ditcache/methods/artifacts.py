"""Where learned methods find their artifacts: a path, or the name of a shipped default model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..artifact import Artifact

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "weights"


def artifact_path(name_or_path: str, method: str) -> Path:
    """A bare name ('dit', 'flux256', ...) is a shipped artifact; anything else is a file path."""
    if "/" not in name_or_path and "\\" not in name_or_path and not name_or_path.endswith(".safetensors"):
        return SHIPPED / f"{method}_{name_or_path}.safetensors"
    return Path(name_or_path)


def load_artifact(name_or_path: str, method: str) -> Artifact:
    return Artifact.load(artifact_path(name_or_path, method), method)


def for_model(method, model: str, text: str = ""):
    """A learned method (one with an ``artifact`` field) set to load model ``model``'s shipped artifact,
    unless its settings text names one (``artifact=``); any other method is returned as it is."""
    if not hasattr(method, "artifact") or "artifact=" in text:
        return method
    return replace(method, artifact=model)
