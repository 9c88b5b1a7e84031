"""The clock: which generation, step and branch each model call is.

Two ways model calls are grouped into denoising steps:
- **a scheduler is followed** (``scheduler`` is set; the installer's wrappers drive ``pending`` and
  ``step_open``): its ``set_timesteps`` makes the next call start a generation of
  ``len(timesteps) - begin_index`` steps, and its ``step()`` closes the step, so the model calls
  before it are the branches of that step (split CFG, Flux's true CFG).
- **no scheduler**: a call with a new timestep starts a step, a call with the same timestep as the
  last one is another branch of it; the step count comes from ``steps=`` or ``Run.set_schedule``.

The clock knows no hooks and no store. Starting a generation first calls every ``on_new_generation``
callback (each run following the clock drops its cache there and checks its method's schedule), then moves
the counters. One clock can drive several runs: the transformers of one pipeline (Wan 2.2's two) share it,
so a step is the pipeline's step whichever transformer is called in it.

Calls outside a generation run uncached and move nothing (``outside``): with a scheduler, a call before its
first ``set_timesteps`` or after the ``step()`` that ends the last step (a warm-up call, a reference encode),
and calls between ``set_timesteps`` and the loop are recognised when the loop's first call comes at another
timestep (they ran full, and step 0 starts again at that call);
without one, nothing is outside, but a call whose timestep moves against the generation's direction starts a
generation (timesteps fall within one, or rise where the model counts time up, as Z-Image does), so a loop
stopped early never leaks into the next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ConcurrentCall(RuntimeError):
    """A model call from a second thread while another thread's generation runs: refused, and the running
    generation is left as it was."""


_CONCURRENT = ("ditcache: this cached model is already generating in another thread; a cached pipeline serves one "
               "request at a time. Use one pipeline (and one ditcache.cached) per worker thread, or serialise the "
               "requests.")


class Clock:
    """Generation, step and branch of the model call in progress (host-side ints, read once per call)."""

    def __init__(self, num_steps: int | None, on_new_generation: Callable[[], None] | None = None) -> None:
        self.num_steps = num_steps    # T of the current generation; None until steps=, a schedule or a scheduler
        self.generation = -1          # 0-based generation index in the run; -1 before the first call
        self.step = -1                # 0-based step in the generation; -1 before its first call
        self.branch = 0               # 0-based model call within the step: CFG branches are a key, not a step
        self.scheduler = None         # the scheduler whose set_timesteps / step delimit generations and steps
        self.pending = False          # set_timesteps ran: the next call starts a generation
        self.step_open = False        # a model call happened since the scheduler's last step()
        self.restart = False          # the last model call raised: the next starts a generation
        self.last_t: float | None = None  # timestep of the last call (steps without a scheduler)
        self.step_t: float | None = None  # timestep of the current step's first call (with a scheduler)
        self.direction = 0            # sign of the timestep's change between steps in this generation (0: unknown)
        self.callbacks: list[Callable[[], None]] = [on_new_generation] if on_new_generation else []
        self.owner = None             # the run that hooks the scheduler for this clock (the first of a pipeline's)
        self.lock = threading.Lock()  # held during a model call: a second thread's call is refused, not mixed in
        self.thread: int | None = None  # the thread whose generation is in progress

    def in_progress(self) -> bool:
        """A generation has started and not reached its last step."""
        return self.step >= 0 and self.num_steps is not None and self.step < self.num_steps - 1

    def new_generation(self) -> None:
        for callback in self.callbacks:
            callback()
        self.generation += 1
        self.step = -1
        self.last_t = None
        self.direction = 0

    def abort(self) -> None:
        """The call in progress raised: forget the step; the next call starts a fresh generation."""
        self.step = -1
        self.last_t = None
        self.step_open = False
        self.restart = True

    def on_set_timesteps(self) -> None:
        """The followed scheduler chose a schedule: the next call starts a generation; drop what is cached
        now (nothing from the last generation may be forecast from)."""
        self.pending = True
        for callback in self.callbacks:
            callback()

    def outside(self) -> bool:
        """Is the model call starting now outside any generation (run it uncached, move nothing)?"""
        if self.scheduler is None or self.pending or self.restart:
            return False
        if self.generation < 0:
            return True  # before the scheduler's first set_timesteps
        return not self.step_open and self.step >= self.num_steps - 1  # after the last step's step()

    def resume(self) -> None:
        """First thing in a model call: after a call that raised, start a generation (unless the
        scheduler's set_timesteps has announced one since, which ``advance`` starts)."""
        if self.restart:
            self.restart = False
            if not self.pending:
                self.new_generation()

    def advance(self, t: float) -> None:
        """Advance step / branch for a model call at timestep ``t`` (after ``resume``)."""
        if self.scheduler is not None:
            if self.pending:
                timesteps = getattr(self.scheduler, "timesteps", None)
                if timesteps is None:
                    raise RuntimeError("the scheduler has no timesteps: call its set_timesteps before the model")
                begin = getattr(self.scheduler, "begin_index", None) or 0  # image-to-image starts mid-schedule
                self.num_steps = len(timesteps) - begin
                self.pending = False
                self.new_generation()
            new_step = not self.step_open or self.step < 0
            if not new_step and self.step == 0 and t != self.step_t:
                # a call at another timestep in the first step: the calls before it came between set_timesteps
                # and the loop (a reference encode, a warm-up). They ran full (step 0 computes everything);
                # drop what they stored and start step 0 again here, so they shift no branch index.
                for callback in self.callbacks:
                    callback()
                self.step = -1
                new_step = True
            self.step_open = True
        else:
            new_step = t != self.last_t
            if new_step and self.last_t is not None:
                d = 1 if t > self.last_t else -1
                if self.direction and d != self.direction:  # time turned back: the last loop stopped early
                    self.new_generation()
                else:
                    self.direction = d
        if not new_step:
            self.branch += 1
            return
        if self.num_steps is None:
            raise RuntimeError(
                "ditcache does not know how many denoising steps this generation has: pass steps=... to "
                "ditcache.cached()/apply(), call run.set_schedule(timesteps), or sample through a "
                "diffusers pipeline (its scheduler announces the steps)"
            )
        if self.generation < 0:
            self.new_generation()
        self.step += 1
        self.branch = 0
        if self.step >= self.num_steps:  # a new generation with the same step count
            self.new_generation()
            self.step = 0
        self.last_t = self.step_t = t

    def scheduled_timestep(self) -> float | None:
        """The followed scheduler's timestep for the current step (``timesteps[begin_index + step]``), or None
        without a scheduler. Forecasts in timestep units measure time here rather than in the model's timestep
        argument, which may hold one value per token (Wan 2.2 TI2V) or be rescaled by the pipeline."""
        timesteps = getattr(self.scheduler, "timesteps", None)
        if timesteps is None or self.step < 0:
            return None
        i = (getattr(self.scheduler, "begin_index", None) or 0) + self.step
        return float(timesteps[i]) if i < len(timesteps) else None
