"""No caching: every site computes every step. The reference the other methods are measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..plan import FULL, Plan, Site, StepContext


@dataclass
class NoCache:
    name: ClassVar[str] = "none"

    def validate(self) -> None:
        pass

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        return [FULL] * len(sites)
