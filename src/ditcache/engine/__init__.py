"""The engine: instance-level hooks on branch modules, step detection, and the branch forward.

``apply(model_or_pipeline, method)`` wraps the model's ``forward`` (to see each call), and the
``forward`` of every branch module that the adapters name. Once per model call, host side, the method
turns a ``StepContext`` into one ``Plan`` per site; the branch forwards then only look up their plan.
Nothing is patched on classes: ``Run.remove()`` restores every ``forward``.

How calls are grouped into denoising steps:
- **with a pipeline or a scheduler** (``cached(pipe, ...)``, ``apply(model, ..., scheduler=s)``), the
  scheduler says: ``set_timesteps`` starts a generation of ``len(scheduler.timesteps)`` steps (less
  the scheduler's begin index, when an image-to-image pipeline starts mid-schedule), and a step ends
  when ``scheduler.step()`` runs. The model calls before it are the branches of that step (split CFG,
  Flux's true CFG). Heun and KDPM2 call the model about 2N times for N steps, each call followed by
  ``step()``: each call is a step of its own for caching.
- **a bare model in the user's own loop**: a call with a new timestep starts a step, a call with the
  same timestep as the last one is another branch of it; the step count comes from ``steps=`` or
  ``run.set_schedule(timesteps)``.

The parts, each owning one thing:
- ``run``: ``Run``, the coordinator (validation, planning each call, FLOP memo, records), and the
  public entry points ``apply``, ``cached``, ``notify_schedule``, ``estimate_memory``;
- ``clock``: which generation, step and branch a model call is;
- ``install``: the patches and hooks on the model and scheduler, and their removal;
- ``execute``: one site's forward under its plan (the hot path);
- ``scheduler``: following a diffusers scheduler (shared by runs, deep-copy aware);
- ``checks``: the memory budget and the schedule warning;
- ``stats``: what a run records, and the FLOP counter.
"""

from .clock import ConcurrentCall
from .run import PipelineRun, Run, apply, cached, estimate_memory, notify_schedule
from .stats import CallRecord, RunStats, flop_counter

__all__ = ["CallRecord", "ConcurrentCall", "PipelineRun", "Run", "RunStats", "apply", "cached", "estimate_memory",
           "flop_counter", "notify_schedule"]
