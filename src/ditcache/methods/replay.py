"""Replay: play back the plans a traced run recorded, call by call, to reproduce it exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..plan import Plan, Site, StepContext, plan_from_dict


@dataclass
class Replay:
    trace: str = ""  # a JSON file written by `ditcache bench --trace` (or a run's .trace saved as JSON)
    start: int = 0   # the trace's generation to replay first (bench: one generation per batch)

    name: ClassVar[str] = "replay"
    ranges: ClassVar[str] = "a trace recorded on the same model, schedule and batch split"

    def __post_init__(self) -> None:
        self._generations: list | None = None
        self._device = torch.device("cpu")  # where plans' token indices go: the model's (set in bind)
        self._gen = -1
        self._call = 0

    def validate(self) -> None:
        if not self.trace and self._generations is None:
            raise ValueError("Replay needs a trace file (or .load(run.trace))")

    def load(self, generations: list) -> Replay:
        """Use in-memory trace data (``run.trace``) instead of a file."""
        self._generations = generations
        return self

    def bind(self, model, sites: list[Site]) -> None:
        if self._generations is None:
            data = json.loads(Path(self.trace).read_text())
            self._generations = data["generations"] if isinstance(data, dict) else data
        self._device = next(model.parameters(), torch.empty(0)).device
        if not 0 <= self.start < len(self._generations):
            raise ValueError(f"Replay.start {self.start} is outside the trace's {len(self._generations)} generations")
        self._gen, self._call = self.start - 1, 0

    def plan(self, ctx: StepContext, sites: list[Site], store) -> list[Plan]:
        if ctx.step == 0 and ctx.branch == 0:
            self._gen, self._call = self._gen + 1, 0
        try:
            calls = self._generations[self._gen][self._call]
        except IndexError:
            raise ValueError(f"the trace has no call {self._call} in generation {self._gen}: "
                             "it was recorded for another schedule or batch split") from None
        if len(calls) != len(sites):
            raise ValueError(f"the trace has {len(calls)} sites per call, this model {len(sites)}")
        self._call += 1
        return [plan_from_dict(d, self._device) for d in calls]
