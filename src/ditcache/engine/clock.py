"""The clock: which generation, step and branch each model call is.

Two ways model calls are grouped into denoising steps:
- **a scheduler is followed** (``scheduler`` is set; the installer's wrappers drive ``pending`` and
  ``step_open``): its ``set_timesteps`` makes the next call start a generation of
  ``len(timesteps) - begin_index`` steps, and its ``step()`` closes the step, so the model calls
  before it are the branches of that step (split CFG, Flux's true CFG).
- **no scheduler**: a call with a new timestep starts a step, a call with the same timestep as the
  last one is another branch of it; the step count comes from ``steps=`` or ``Run.set_schedule``.

The clock knows no hooks and no store. Starting a generation first calls ``on_new_generation`` (the
run drops its cache there and checks the method's schedule), then moves the counters.
"""

from __future__ import annotations

from collections.abc import Callable


class Clock:
    """Generation, step and branch of the model call in progress (host-side ints, read once per call)."""

    def __init__(self, num_steps: int | None, on_new_generation: Callable[[], None]) -> None:
        self.num_steps = num_steps    # T of the current generation; None until steps=, a schedule or a scheduler
        self.generation = -1          # 0-based generation index in the run; -1 before the first call
        self.step = -1                # 0-based step in the generation; -1 before its first call
        self.branch = 0               # 0-based model call within the step: CFG branches are a key, not a step
        self.scheduler = None         # the scheduler whose set_timesteps / step delimit generations and steps
        self.pending = False          # set_timesteps ran: the next call starts a generation
        self.step_open = False        # a model call happened since the scheduler's last step()
        self.restart = False          # the last model call raised: the next starts a generation
        self.last_t: float | None = None  # timestep of the last call (steps without a scheduler)
        self._on_new_generation = on_new_generation

    def new_generation(self) -> None:
        self._on_new_generation()
        self.generation += 1
        self.step = -1
        self.last_t = None

    def abort(self) -> None:
        """The call in progress raised: forget the step; the next call starts a fresh generation."""
        self.step = -1
        self.last_t = None
        self.step_open = False
        self.restart = True

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
            self.step_open = True
        else:
            new_step = t != self.last_t
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
        self.last_t = t
