"""No caching: every site computes every step. The reference the other methods are measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..plan import Action, Plan, Site, StepContext

_UNKEPT = Plan(Action.FULL, keep=False)


@dataclass
class NoCache:
    name: ClassVar[str] = "none"
    ranges: ClassVar[str] = "no settings"

    def validate(self) -> None:
        pass

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        return [_UNKEPT] * len(sites)  # computes everything and holds nothing
