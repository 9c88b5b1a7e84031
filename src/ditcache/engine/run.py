"""``Run``: one model under one method, coordinating the clock, the installer and the executor.

Per model call (``_call``): the clock says which generation, step and branch it is; the method turns a
``StepContext`` into one ``Plan`` per site (host side, once); the executor's site forwards then only
look up their plan. The run counts each plan shape's FLOPs once (memoised), records every call in
``stats`` (and ``trace``), and after the first step checks the predicted cache memory. Also here: the
public entry points ``apply``, ``cached``, ``notify_schedule`` and ``estimate_memory``.
"""

from __future__ import annotations

import copy
import inspect
import threading
import time
from contextlib import contextmanager

import torch
from torch import nn

from .. import adapters
from ..forecast.common import Coords
from ..methods import resolve_method
from ..parallel import SOLO, context_group, whole_grid
from ..plan import Action, Plan, Site, StepContext, plan_to_dict
from ..store import Store
from .checks import check_memory, check_schedule, predict_bytes
from .clock import _CONCURRENT, Clock, ConcurrentCall
from .execute import Executor
from .install import Installer
from .profile import as_profile
from .stats import CallRecord, RunStats, flop_counter
from .targets import _denoisers, _find_model, _is_compiled, _uncompiled  # noqa: F401 (re-exported)


class Run:
    """One model under one method: the hooks, the store and the stats. Use ``remove()`` to undo."""

    def __init__(self, target, method, *, steps: int | None = None, trace: bool = False,
                 scheduler=None, max_cache_bytes: int | None = None, count_flops: bool = True,
                 clock: Clock | None = None, name: str = "transformer") -> None:
        self.name = name  # the pipeline attribute holding the model ("transformer", "transformer_2", ...)
        self.model, self._pipe, found = _find_model(target) if clock is None else (target, None, None)
        # torch.compile'd targets: ditcache's wrappers run in Python and each wrapped forward is compiled on
        # its own, so no step's plan is ever part of a graph (see execute.host_side)
        compiled = next((m for m in (target, getattr(target, "transformer", None)) if _is_compiled(m)), None)
        self._compiler = getattr(compiled, "dynamo_ctx", torch.compile) if compiled is not None else None
        scheduler = scheduler if scheduler is not None else found
        if scheduler is not None and not (callable(getattr(scheduler, "set_timesteps", None))
                                          and callable(getattr(scheduler, "step", None))):
            raise TypeError(f"scheduler must be a diffusers scheduler (set_timesteps and step), got "
                            f"{type(scheduler).__name__}")
        if getattr(self.model, "_ditcache_run", None) is not None:
            raise RuntimeError(
                f"ditcache is already applied to this {type(self.model).__name__}; call remove() on the "
                "first handle (or leave its `with` block) before applying again"
            )
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        if max_cache_bytes is not None and (not isinstance(max_cache_bytes, (int, float)) or max_cache_bytes < 0):
            raise ValueError(f"max_cache_bytes must be a number of bytes >= 0, got {max_cache_bytes!r}")
        self.max_cache_bytes = max_cache_bytes
        self.count_flops = count_flops  # False: no FLOP counter at all (timing runs: it slows the calls it counts)
        self.predicted_bytes: dict[str, int] | None = None  # memory.predict after the first step
        self.method = resolve_method(method)
        if callable(getattr(self.method, "bind", None)):
            # a copy: binding (a learned method's artifact, a replayed trace) must not change the user's
            # instance, which may be applied to another pipeline at the same time. Methods without bind keep
            # no per-model state (their state lives in the run's store), so they are used as given.
            self.method = copy.copy(self.method)
        self.sites: list[Site] = adapters.find_sites(self.model)
        self._no_flops = (0, [0] * len(self.sites), 0)  # what a call records when count_flops is False
        self._passthrough = [Plan(Action.FULL, keep=False)] * len(self.sites)  # calls outside a generation
        self.spec = adapters.model_spec(self.model)
        self._signature = inspect.signature(self.model.forward)
        if self.spec.timestep_arg not in self._signature.parameters:
            raise TypeError(
                f"{type(self.model).__name__}.forward has no '{self.spec.timestep_arg}' argument, so ditcache "
                "cannot tell the denoising steps apart; register the model with "
                "ditcache.register_model(cls, ModelSpec(timestep_arg=...))"
            )
        bind = getattr(self.method, "bind", None)
        if callable(bind):  # learned methods check that their artifact fits this model
            bind(self.model, self.sites)
        self.store = Store(getattr(self.method, "forecast", None))
        self.stats = RunStats([s.name for s in self.sites])
        self.trace: list[list[list[dict]]] | None = [] if trace else None  # generations > calls > site plans
        if clock is None:
            self.clock = Clock(steps, self._new_generation)
            self.clock.owner = self
        else:  # another transformer of the same pipeline: one step clock drives both
            self.clock = clock
            clock.callbacks.append(self._new_generation)
        self._traced = -1  # the clock's generation of the last trace entry
        self._seen: dict[int, tuple] = {}  # branch -> input shapes of its calls in this generation
        self._checked = -1  # the generation whose cache memory was last predicted and checked
        self.executor = Executor(self.sites, self.store, compiled=self._compiler is not None)
        self._warned: set[int] = set()  # step counts the schedule warning was given for
        self._ctx: StepContext | None = None
        self.shards = SOLO  # the context-parallel group of the last call (ditcache.parallel)
        self._flop_memo: dict = {}  # (plans' shape, inputs' shapes) -> (FLOPs, FLOPs per site, verification FLOPs)
        self._plan_s = 0.0
        self._plan_flops = 0  # FLOPs of the last call's plan() (counted every call when count_flops)
        self.guards: list = []  # (ctx, inputs) -> None, at each generation's first call: a profile's checks
        self._installer = Installer(self)
        try:
            self._installer.install(scheduler)
        except BaseException:
            self.remove()  # never leave a half-hooked model behind
            raise

    # where the run is: the clock's and the current call's state, read-only
    num_steps = property(lambda self: self.clock.num_steps)
    generation = property(lambda self: self.clock.generation)
    step = property(lambda self: self.clock.step)
    branch = property(lambda self: self.clock.branch)
    plans = property(lambda self: self.executor.plans)   # list[Plan]: the last call's, one per site
    coords = property(lambda self: self.executor.coords)  # where the last call's step is (timestep, index)

    def remove(self) -> None:
        """Restore every patched ``forward`` (and the scheduler's methods) and drop the store. Safe to
        call twice."""
        self._installer.remove()
        if self._new_generation in self.clock.callbacks:
            self.clock.callbacks.remove(self._new_generation)
        if getattr(self.model, "_ditcache_run", None) is self:
            del self.model._ditcache_run
        self.store.clear()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # ----------------------------------------------------------------- generations
    def set_schedule(self, timesteps) -> None:
        """The sampler announces a new generation of ``len(timesteps)`` steps (for loops without a
        diffusers scheduler; with one, its ``set_timesteps`` does this)."""
        self.clock.num_steps = len(timesteps)
        self.clock.new_generation()

    def _new_generation(self) -> None:
        """The clock starts a generation: nothing cached carries over; say if the schedule caches nothing."""
        self.store.clear()
        self.executor.shapes.clear()
        self._seen.clear()
        check_schedule(self.method, self.clock.num_steps, self._warned)

    def _abort(self) -> None:
        """Forget the generation in progress: the next call starts a fresh one."""
        self.store.clear()
        self.executor.shapes.clear()
        self.executor.captured.clear()
        self._seen.clear()
        self.clock.abort()

    # ----------------------------------------------------------------- calls
    def _begin_call(self, inputs: dict, t: float, shapes: tuple) -> None:
        clock = self.clock
        clock.resume()
        clock.advance(t)
        if self._checked != clock.generation and clock.step >= 1 and clock.branch == 0:
            self._checked = clock.generation  # every generation: a later one may run a larger batch
            branches = sum(1 for r in self.stats.records if r.generation == clock.generation and r.step == 0)
            self.predicted_bytes = predict_bytes(self.method, self.sites, self.store, branches,
                                                 adapters.token_grid(self.model, inputs), clock.num_steps)
            check_memory(self.method, self.predicted_bytes, self.max_cache_bytes)
        x = inputs.get("hidden_states")
        T = clock.num_steps
        # A branch's first call in this generation, or a call whose inputs changed shape (a KV-cached
        # prefix, a batch that shrinks when a guidance interval ends), has nothing cached to reuse: the
        # method plans it as its step 0 (computing everything, starting that branch's history). So branches
        # that come and go (skip-layer guidance, CFG only inside an interval) and a second transformer that
        # starts mid-trajectory each start with a full step; a branch that stops appearing costs nothing.
        fresh = self._seen.get(clock.branch) != shapes
        self._seen[clock.branch] = shapes
        step = 0 if fresh else clock.step
        shards = self.shards = context_group(self.model, self.shards)  # SOLO unless context-parallel
        self.executor.shards = shards
        self._ctx = StepContext(
            step=step,
            num_steps=T,
            progress=step / (T - 1) if T > 1 else 0.0,
            timestep=t,
            branch=clock.branch,
            batch_size=int(x.shape[0]) if isinstance(x, torch.Tensor) else 0,
            grid=whole_grid(adapters.token_grid(self.model, inputs), shards),
            shards=shards,
        )
        if clock.step == 0 and clock.branch == 0:
            for guard in self.guards:
                guard(self._ctx, inputs)
        start = time.perf_counter()
        if self.count_flops:  # planning (scores, k-means) differs call by call: counted every call, not memoised
            with flop_counter() as counter:
                plans = self.method.plan(self._ctx, self.sites, self.store)
            self._plan_flops = counter.get_total_flops()
        else:
            plans = self.method.plan(self._ctx, self.sites, self.store)
            self._plan_flops = 0
        self._plan_s = time.perf_counter() - start
        if len(plans) != len(self.sites):
            raise RuntimeError(
                f"{type(self.method).__name__}.plan returned {len(plans)} plans for {len(self.sites)} sites"
            )
        for site, plan in zip(self.sites, plans):
            if plan.action is Action.PARTIAL and site.partial is None:
                raise ValueError(f"{site.name} ({site.kind}) has no token-subset path; it cannot be planned PARTIAL")
        at = clock.scheduled_timestep()  # the scheduler's timestep when one is followed, else the argument's
        self.executor.begin(plans, clock.branch, Coords(t if at is None else at, clock.step))

    def _call(self, orig, args, kwargs):
        """One model call, under the clock's lock: a call from a second thread while one runs, or while
        another thread's generation is in progress, is refused (per-call state is the run's)."""
        clock = self.clock
        if not clock.lock.acquire(blocking=False):
            raise ConcurrentCall(_CONCURRENT)
        try:
            me = threading.get_ident()
            if clock.thread not in (None, me) and clock.in_progress():
                raise ConcurrentCall(_CONCURRENT)
            clock.thread = me
            return self._locked_call(orig, args, kwargs)
        finally:
            clock.lock.release()

    def _locked_call(self, orig, args, kwargs):
        """Plan the call, run it (counting FLOPs the first time its plan shape is seen), record it."""
        start = time.perf_counter()
        inputs = self._signature.bind_partial(*args, **kwargs).arguments
        t = adapters.timestep_value(inputs[self.spec.timestep_arg])
        shapes = tuple(tuple(v.shape) for v in inputs.values() if isinstance(v, torch.Tensor))
        clock = self.clock
        if clock.scheduler is not None and self._pipe is not None and \
                getattr(self._pipe, "scheduler", None) is not clock.scheduler:
            # the user swapped pipe.scheduler inside the `with` block: follow the new one from here
            self._installer.hook_scheduler(self._pipe.scheduler)
            clock.pending = True
        if clock.outside():  # before the scheduler's first schedule, or after its last step
            self.executor.begin(self._passthrough, self.clock.branch, self.executor.coords, passthrough=True)
            return orig(*args, **kwargs)
        self._begin_call(inputs, t, shapes)
        executor, plans = self.executor, self.executor.plans
        key = (tuple((p.action, p.n_tokens, p.verify) for p in plans), shapes)
        memo = self._flop_memo.get(key) if self.count_flops else self._no_flops
        if memo is None:  # first call of this plan shape: count its FLOPs, per site too
            executor.meter, executor.verify_flops = [0] * len(self.sites), 0
            try:
                with flop_counter() as executor.counter:
                    out = orig(*args, **kwargs)
                # the sites computed only to check a forecast (SpeCa) are planning: kept apart from the call's
                memo = self._flop_memo[key] = (executor.counter.get_total_flops() - executor.verify_flops,
                                               executor.meter, executor.verify_flops)
            finally:
                executor.counter = executor.meter = None
        else:
            out = orig(*args, **kwargs)
        wall = time.perf_counter() - start
        step = self.clock.step  # (the context's step is 0 for a branch's first call: the record keeps the real one)
        if self.trace is not None:
            if self._traced != self.clock.generation:  # this run's first call in the generation
                self._traced = self.clock.generation
                self.trace.append([])
            self.trace[-1].append([plan_to_dict(p) for p in plans])
        self.stats.records.append(CallRecord(
            self.clock.generation, step, self._ctx.branch, self._ctx.timestep,
            step / (self.clock.num_steps - 1) if self.clock.num_steps > 1 else 0.0,
            [p.action.value for p in plans], [p.n_tokens for p in plans],
            memo[0], list(memo[1]), wall, self._plan_s, self.store.nbytes(),
            self._plan_flops + memo[2],
        ))
        return out


class PipelineRun:
    """The runs of a pipeline that holds several transformers: one run per transformer (its own sites, store
    and stats), one step clock for all, so a step is the pipeline's step whichever transformer runs it, and a
    transformer that starts mid-trajectory starts with a full step. ``runs`` maps the attribute name to it."""

    def __init__(self, runs: dict[str, Run]) -> None:
        self.runs = runs

    @property
    def stats(self) -> PipelineStats:
        return PipelineStats({n: r.stats for n, r in self.runs.items()})

    def remove(self) -> None:
        for run in reversed(list(self.runs.values())):
            run.remove()

    def __enter__(self) -> PipelineRun:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class PipelineStats:
    """Each transformer's ``RunStats``, and a summary per transformer."""

    def __init__(self, per_model: dict[str, RunStats]) -> None:
        self.per_model = per_model

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.per_model.values())

    @property
    def plan_flops(self) -> int:
        return sum(s.plan_flops for s in self.per_model.values())

    def summary(self) -> str:
        return "\n".join(f"{name}: " + stats.summary().replace("\n", f"\n{name}: ")
                         for name, stats in self.per_model.items())


def apply(target, method, *, steps: int | None = None, trace: bool = False, scheduler=None,
          max_cache_bytes: int | None = None, count_flops: bool = True) -> Run | PipelineRun:
    """Hook ``method`` into a transformer or pipeline. Returns the run; ``run.remove()`` undoes it. A pipeline
    with several transformers (``transformer_2``: Wan 2.2) gets every one hooked, and a ``PipelineRun``.

    steps: the step count, for a bare model in your own loop without a scheduler.
    scheduler: the diffusers scheduler your own loop uses with a bare model: its ``set_timesteps`` and
    ``step()`` then delimit generations and steps, as with a pipeline.
    trace: keep every call's plans in ``run.trace`` (replayable with ``ditcache.methods.Replay``).
    max_cache_bytes: refuse (MemoryError) after the first step of a generation when its predicted peak cache
    exceeds it (checked in every generation).
    count_flops: count each plan shape's FLOPs on its first call (torch's counter slows those calls; timing
    runs switch it off and record 0 FLOPs).

    method may be a profile (``ditcache tune``'s JSON file, or a ``ditcache.profile.Profile``): its method,
    once the transformers are the ones it was measured on; its step count and resolution are checked at
    each generation's first call."""
    profile = as_profile(method)
    if profile is not None:
        method = profile.bind(target)
    names = _denoisers(target)
    first = Run(target, method, steps=steps, trace=trace, scheduler=scheduler, max_cache_bytes=max_cache_bytes,
                count_flops=count_flops)
    if profile is not None:
        first.guards.append(profile.check_call)
    if len(names) <= 1:
        return first
    runs = {"transformer": first}
    try:
        for name in names:
            if name != "transformer":
                runs[name] = Run(_uncompiled(getattr(target, name)), method, trace=trace,
                                 max_cache_bytes=max_cache_bytes, count_flops=count_flops, clock=first.clock,
                                 name=name)
    except BaseException:
        for run in reversed(list(runs.values())):
            run.remove()
        raise
    return PipelineRun(runs)


@contextmanager
def cached(target, method, *, steps: int | None = None, trace: bool = False, scheduler=None,
           max_cache_bytes: int | None = None, count_flops: bool = True):
    """``with ditcache.cached(pipe_or_model, ditcache.FORA(interval=3)) as run: ...`` (see ``apply``)."""
    run = apply(target, method, steps=steps, trace=trace, scheduler=scheduler, max_cache_bytes=max_cache_bytes,
                count_flops=count_flops)
    try:
        yield run
    finally:
        run.remove()


def notify_schedule(model: nn.Module, timesteps) -> None:
    """Samplers call this after choosing their timesteps; a no-op when no run is attached."""
    run = getattr(model, "_ditcache_run", None)
    if run is not None:
        run.set_schedule(timesteps)


def estimate_memory(target, method, inputs: dict, steps: int = 50, branches: int = 1) -> dict[str, int]:
    """Peak cache bytes ``method`` will hold on ``target`` (a transformer or pipeline), per site and total,
    in a ``steps``-step generation of model calls like ``inputs`` (one call's keyword arguments, at the batch
    and resolution you will run; split-CFG pipelines: ``branches=2``). Runs that one call uncached, to read
    the outputs' shapes."""
    from ..memory import from_store

    method = resolve_method(method)
    run = Run(target, _Discover(method), steps=1)
    try:
        with torch.no_grad():
            run.model(**inputs)
        grid = adapters.token_grid(run.model, run._signature.bind_partial(**inputs).arguments)
        if callable(getattr(method, "bind", None)):  # learned methods' schedules come from their artifacts
            method.bind(run.model, run.sites)
        return from_store(method, run.sites, run.store, branches, grid, steps)
    finally:
        run.remove()


class _Discover:
    """One full call that keeps what ``method`` would keep at its first step: outputs, attention inputs,
    its probe block's output and the final layer's input."""

    name = "discover"

    def __init__(self, method) -> None:
        self.method = method
        probe = getattr(method, "probe_layer", None)
        if callable(probe):
            self.probe_layer = probe

    def validate(self) -> None:
        pass

    def plan(self, ctx, sites, store):
        return [Plan(Action.FULL, keep_input=s.kind in ("attn", "cross_attn"), keep_keys=s.kind == "attn")
                for s in sites]

    def final(self, ctx, store, x):
        store.shared[("freqca", ctx.branch)] = {"crf": x}
        return None
