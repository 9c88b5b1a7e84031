"""Where learned methods find their artifacts: a path, or the name of a shipped default model."""

from __future__ import annotations

from pathlib import Path

from ..learn.common import Artifact

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "weights"


def artifact_path(name_or_path: str, method: str) -> Path:
    if name_or_path in ("dit", "flux"):
        return SHIPPED / f"{method}_{name_or_path}.safetensors"
    return Path(name_or_path)


def load_artifact(name_or_path: str, method: str) -> Artifact:
    return Artifact.load(artifact_path(name_or_path, method), method)
