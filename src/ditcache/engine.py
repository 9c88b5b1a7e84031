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
"""

from __future__ import annotations

import functools
import inspect
import time
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from . import adapters
from .forecast.common import Coords
from .methods import resolve_method
from .plan import Action, Plan, Site, StepContext, plan_to_dict
from .store import Store, as_tuple, from_tuple
from .tokens import gather_tokens, refresh


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# torch's counter has no formula for the CPU fused attention kernel: without this it counts 0.
_EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, also counting CPU fused attention."""
    return FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)


@dataclass
class CallRecord:
    """One model call: a step, or another CFG branch of it."""

    generation: int             # 0-based index of the generation (pipeline call) in this run
    step: int
    branch: int
    timestep: float
    progress: float
    actions: list[str]          # per site: Action value
    tokens: list[int]           # per site: tokens computed by PARTIAL (0 otherwise)
    flops: int                  # FLOPs executed by the whole call (torch's counter, memoised per plan shape)
    site_flops: list[int]       # per site
    wall_s: float               # wall-clock of the call (includes counting on the first call of a plan shape)
    plan_s: float               # host-side planning time of the method (scores, k-means), inside wall_s
    cache_bytes: int            # bytes held by the store after the call


@dataclass
class RunStats:
    sites: list[str]
    records: list[CallRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many site calls were computed / reused / forecast / partial / skipped."""
        c = Counter(a for r in self.records for a in r.actions)
        return {a.value: c.get(a.value, 0) for a in Action}

    def full_steps(self) -> int:
        """Steps (branch 0) in which every site was computed."""
        return sum(1 for r in self.records if r.branch == 0 and all(a == "full" for a in r.actions))

    def steps(self) -> int:
        """Denoising steps run, over all generations."""
        return sum(1 for r in self.records if r.branch == 0)

    def generations(self) -> list[RunStats]:
        """The stats of each generation (pipeline call) of the run, in order."""
        out: dict[int, RunStats] = {}
        for r in self.records:
            out.setdefault(r.generation, RunStats(self.sites)).records.append(r)
        return [out[g] for g in sorted(out)]

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.records)

    @property
    def wall_s(self) -> float:
        return sum(r.wall_s for r in self.records)

    @property
    def peak_cache_bytes(self) -> int:
        return max((r.cache_bytes for r in self.records), default=0)

    def summary(self) -> str:
        """One line per generation: steps, what the site calls did, FLOPs and peak cache memory."""
        gens = self.generations()
        if not gens:
            return "no model calls recorded"
        lines = []
        for i, g in enumerate(gens):
            c = g.counts()
            head = f"generation {i + 1}: " if len(gens) > 1 else ""
            lines.append(
                f"{head}{g.steps()} steps ({g.full_steps()} fully computed), {len(self.sites)} sites: "
                + ", ".join(f"{k} {v}" for k, v in c.items() if v)
                + f"; {g.flops / 1e9:.2f} GFLOPs; peak cache {g.peak_cache_bytes / 2**20:.1f} MiB"
            )
        return "\n".join(lines)


class Run:
    """One model under one method: the hooks, the store and the stats. Use ``remove()`` to undo."""

    def __init__(self, target, method, *, steps: int | None = None, trace: bool = False,
                 scheduler=None, max_cache_bytes: int | None = None, count_flops: bool = True) -> None:
        self.model, self._pipe, found = _find_model(target)
        # torch.compile'd targets: ditcache's wrappers run in Python and each wrapped forward is compiled on
        # its own, so no step's plan is ever part of a graph (see _host_side)
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
        self.sites: list[Site] = adapters.find_sites(self.model)
        self._no_flops = (0, [0] * len(self.sites))  # what a call records when count_flops is False
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
        self.num_steps = steps
        self.trace: list[list[list[dict]]] | None = [] if trace else None  # generations > calls > site plans
        self.generation = -1
        self.step = -1
        self.branch = 0
        self.coords = Coords(0.0, 0)  # where the current step is (timestep value, step index)
        self._captured: dict[int, torch.Tensor] = {}  # pre-gate outputs of gated whole-block sites (FULL calls)
        self._shapes: dict = {}  # (branch, site) -> ((shape, dtype, device) per stream, single) of unkept FULLs
        self._warned: set[int] = set()  # step counts the schedule warning was given for
        self.plans: list[Plan] = []
        self._scheduler = None        # the scheduler whose set_timesteps / step delimit generations and steps
        self._scheduler_patches: list[tuple[object, str, object]] = []
        self._pending = False         # set_timesteps ran: the next call starts a generation
        self._step_open = False       # a model call happened since the scheduler's last step()
        self._restart = False         # the last model call raised: the next starts a generation
        self._last_t: float | None = None
        self._ctx: StepContext | None = None
        self._meter: list[int] | None = None
        self._counter: FlopCounterMode | None = None
        self._flop_memo: dict = {}
        self._restore: list[tuple[object, str, object]] = []
        self._plan_s = 0.0
        try:
            self._install(scheduler)
        except BaseException:
            self.remove()  # never leave a half-hooked model behind
            raise

    # ----------------------------------------------------------------- hooks
    def _patch(self, obj, attr: str, fn, into: list | None = None) -> None:
        (self._restore if into is None else into).append((obj, attr, obj.__dict__.get(attr, _ABSENT)))
        setattr(obj, attr, fn)

    def _install(self, scheduler) -> None:
        self._patch(self.model, "forward", self._model_forward(self._compile(self.model.forward)))
        for site in self.sites:
            make = self._block_forward if site.kind == "block" else self._branch_forward
            self._patch(site.module, "forward", make(site, self._compile(site.module.forward)))
            spec = adapters.block_spec(site.block)
            if site.kind == "block" and spec.finish is not None:
                self._capture(site, getattr(site.module, spec.pre_gate))
        if scheduler is not None:
            self._hook_scheduler(scheduler)
        probe = getattr(self.method, "probe_layer", None)
        layer = probe(self.sites) if callable(probe) else None
        if layer is not None:
            self._install_probe(layer)
        if callable(getattr(self.method, "final", None)):
            self._install_final()
        self.model._ditcache_run = self

    def _hook_scheduler(self, scheduler) -> None:
        """Follow ``scheduler``: its set_timesteps starts a generation, its step() ends a step. The
        wrappers keep the wrapped methods' signatures (diffusers inspects set_timesteps for sigmas=)."""
        _unpatch(self._scheduler_patches)
        self._scheduler = scheduler

        set_timesteps, step = scheduler.set_timesteps, scheduler.step

        @functools.wraps(set_timesteps)
        def on_set_timesteps(*args, **kwargs):
            out = set_timesteps(*args, **kwargs)
            self._pending = True
            self.store.clear()
            return out

        @functools.wraps(step)
        def on_step(*args, **kwargs):
            self._step_open = False
            return step(*args, **kwargs)

        self._patch(scheduler, "set_timesteps", on_set_timesteps, self._scheduler_patches)
        self._patch(scheduler, "step", on_step, self._scheduler_patches)

    def _compile(self, fn):
        """A compiled copy of a forward when the user compiled the model, else the forward itself. Calls
        whose FLOPs are being counted run eagerly: dynamo does not trace under torch's FLOP counter."""
        if self._compiler is None:
            return fn
        compiled = self._compiler(fn)  # the user's compile context: same backend and options
        return functools.wraps(fn)(lambda *args, **kwargs: (fn if self._meter is not None else compiled)(
            *args, **kwargs))

    def _capture(self, site: Site, module: nn.Module) -> None:
        """Keep ``module``'s output (a gated block's pre-gate output) when the block computes it."""
        @_host_side
        def hook(mod, args, out):
            self._captured[site.index] = out

        self._restore.append((module.register_forward_hook(hook), "remove", _HANDLE))

    def _install_final(self) -> None:
        """Let the method see, and replace, the input of the model's final layer (the blocks' output on
        the image tokens): ``method.final(ctx, store, x)`` returns a tensor to use instead, or None."""
        name = self.spec.final
        module = getattr(self.model, name, None) if name else None
        if not isinstance(module, nn.Module):
            raise ValueError(f"{type(self.method).__name__} needs the model's final layer, and "
                             f"{type(self.model).__name__} has no '{name}' module: set ModelSpec.final")

        @_host_side
        def hook(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            new = self.method.final(self._ctx, self.store, x)
            if new is None:
                return None
            return ((new,) + tuple(args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": new})

        self._restore.append((module.register_forward_pre_hook(hook, with_kwargs=True), "remove", _HANDLE))

    def _install_probe(self, layer: int) -> None:
        """Keep the image-stream output of block ``layer`` of each FULL call in ``store.shared``
        (key ("probe", branch)), and its text stream where the block returns one ("probe-text")."""
        sites = [s for s in self.sites if s.layer == layer]
        if not sites:
            raise ValueError(f"probe layer {layer} is out of range (0..{self.sites[-1].layer})")
        block, image_out = sites[0].block, adapters.block_spec(sites[0].block).image_out

        @_host_side
        def hook(module, args, out):
            if self.plans[sites[0].index].action is Action.FULL:
                self.store.shared[("probe", self.branch)] = out if image_out is None else out[image_out]
                if image_out is not None and len(out) == 2:  # (text, image) or (image, text)
                    self.store.shared[("probe-text", self.branch)] = out[1 - image_out]

        handle = block.register_forward_hook(hook)
        self._restore.append((handle, "remove", _HANDLE))

    def remove(self) -> None:
        """Restore every patched ``forward`` (and the scheduler's methods) and drop the store. Safe to
        call twice."""
        _unpatch(self._scheduler_patches)
        _unpatch(self._restore)
        if getattr(self.model, "_ditcache_run", None) is self:
            del self.model._ditcache_run
        self.store.clear()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    # ----------------------------------------------------------------- steps
    def set_schedule(self, timesteps) -> None:
        """The sampler announces a new generation of ``len(timesteps)`` steps (for loops without a
        diffusers scheduler; with one, its ``set_timesteps`` does this)."""
        self.num_steps = len(timesteps)
        self._new_generation()

    def _new_generation(self) -> None:
        self.store.clear()
        self._shapes.clear()
        self._check_schedule()
        self.generation += 1
        self.step = -1
        self._last_t = None

    def _check_memory(self, grid) -> None:
        """After the first step (all its branches seen), predict the generation's peak cache bytes; over
        ``max_cache_bytes``, refuse before anything beyond that step is cached."""
        from .memory import from_store

        branches = sum(1 for r in self.stats.records if r.generation == self.generation and r.step == 0)
        self.predicted_bytes = from_store(self.method, self.sites, self.store, max(branches, 1), grid, self.num_steps)
        total = self.predicted_bytes["total"]
        if self.max_cache_bytes is None or total <= self.max_cache_bytes:
            return
        top = sorted(((v, k) for k, v in self.predicted_bytes.items() if k not in ("total", "shared")), reverse=True)
        raise MemoryError(
            f"ditcache: {type(self.method).__name__} would hold {total / 2**20:.1f} MiB of cache for this model, "
            f"batch and resolution, over max_cache_bytes ({self.max_cache_bytes / 2**20:.1f} MiB); largest sites: "
            + ", ".join(f"{k} {v / 2**20:.1f} MiB" for v, k in top[:3])
            + ". Ways down: a lower forecast order (each order adds one output-sized tensor per site), FORA (one "
            "output per site), FreqCa (one feature for the whole model), fewer sites (ditcache.register_block "
            "with fewer branches), or a smaller batch. ditcache.estimate_memory predicts it without running.")

    def _check_schedule(self) -> None:
        """Say once per step count when the method's schedule caches nothing at this step count (an interval
        or warm-up as long as the run) instead of silently computing every step."""
        t, full_steps = self.num_steps, getattr(self.method, "full_steps", None)
        if t is None or full_steps is None or t in self._warned or self.method.name == "none":
            return
        self._warned.add(t)
        if len(full_steps(t)) == t and len(full_steps(1000)) < 1000:  # (FORA(interval=1) means it: no warning)
            from .methods import describe

            warnings.warn(f"{describe(self.method)} computes all {t} steps at this step count (its interval or "
                          f"warm-up spans the whole run): nothing will be cached. Valid settings: "
                          f"{getattr(self.method, 'ranges', '')}", stacklevel=4)

    def _next_call(self, t: float) -> None:
        """Advance step / branch for a model call at timestep ``t``."""
        if self._restart:  # the last call raised: this one starts a generation
            self._restart = False
            if not self._pending:
                self._new_generation()
        if self._scheduler is not None:
            if self._pipe is not None and getattr(self._pipe, "scheduler", None) is not self._scheduler:
                # the user swapped pipe.scheduler inside the `with` block: follow the new one from here
                self._hook_scheduler(self._pipe.scheduler)
                self._pending = True
            if self._pending:
                timesteps = getattr(self._scheduler, "timesteps", None)
                if timesteps is None:
                    raise RuntimeError("the scheduler has no timesteps: call its set_timesteps before the model")
                begin = getattr(self._scheduler, "begin_index", None) or 0  # image-to-image starts mid-schedule
                self.num_steps = len(timesteps) - begin
                self._pending = False
                self._new_generation()
            new_step = not self._step_open or self.step < 0
            self._step_open = True
        else:
            new_step = t != self._last_t
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
            self._new_generation()
        self.step += 1
        self.branch = 0
        if self.step >= self.num_steps:  # a new generation with the same step count
            self._new_generation()
            self.step = 0
        self._last_t = t

    def _begin_call(self, inputs: dict) -> None:
        t = adapters.timestep_value(inputs[self.spec.timestep_arg])
        self._next_call(t)
        if self.predicted_bytes is None and self.step == 1 and self.branch == 0:
            self._check_memory(adapters.token_grid(self.model, inputs))
        x = inputs.get("hidden_states")
        T = self.num_steps
        self._ctx = StepContext(
            step=self.step,
            num_steps=T,
            progress=self.step / (T - 1) if T > 1 else 0.0,
            timestep=t,
            branch=self.branch,
            batch_size=int(x.shape[0]) if isinstance(x, torch.Tensor) else 0,
            grid=adapters.token_grid(self.model, inputs),
        )
        start = time.perf_counter()
        plans = self.method.plan(self._ctx, self.sites, self.store)
        self._plan_s = time.perf_counter() - start
        if len(plans) != len(self.sites):
            raise RuntimeError(
                f"{type(self.method).__name__}.plan returned {len(plans)} plans for {len(self.sites)} sites"
            )
        for site, plan in zip(self.sites, plans):
            if plan.action is Action.PARTIAL and site.partial is None:
                raise ValueError(f"{site.name} ({site.kind}) has no token-subset path; it cannot be planned PARTIAL")
        self.plans = plans
        self.coords = Coords(t, self.step)

    def _model_forward(self, orig):
        @_host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            try:
                return self._call(orig, args, kwargs)
            except BaseException:
                self._abort()  # a call that raised leaves nothing that changes the next generation
                raise

        return forward

    def _abort(self) -> None:
        """Forget the generation in progress: the next call starts a fresh one."""
        self.store.clear()
        self._shapes.clear()
        self._captured.clear()
        self.step = -1
        self._last_t = None
        self._step_open = False
        self._restart = True

    def _call(self, orig, args, kwargs):
        """One model call: plan it, run it (counting FLOPs the first time its plan shape is seen), record it."""
        start = time.perf_counter()
        inputs = self._signature.bind_partial(*args, **kwargs).arguments
        self._begin_call(inputs)
        shapes = tuple(tuple(v.shape) for v in inputs.values() if isinstance(v, torch.Tensor))
        key = (tuple((p.action, p.n_tokens, p.verify) for p in self.plans), shapes)
        memo = self._flop_memo.get(key) if self.count_flops else self._no_flops
        if memo is None:  # first call of this plan shape: count its FLOPs, per site too
            self._meter = [0] * len(self.sites)
            try:
                with flop_counter() as self._counter:
                    out = orig(*args, **kwargs)
                memo = self._flop_memo[key] = (self._counter.get_total_flops(), self._meter)
            finally:
                self._counter = self._meter = None
        else:
            out = orig(*args, **kwargs)
        wall = time.perf_counter() - start
        if self.trace is not None:
            if self._ctx.step == 0 and self._ctx.branch == 0:
                self.trace.append([])
            self.trace[-1].append([plan_to_dict(p) for p in self.plans])
        self.stats.records.append(CallRecord(
            self.generation, self._ctx.step, self._ctx.branch, self._ctx.timestep, self._ctx.progress,
            [p.action.value for p in self.plans], [p.n_tokens for p in self.plans],
            memo[0], list(memo[1]), wall, self._plan_s, self.store.nbytes(),
        ))
        return out

    # ----------------------------------------------------------------- sites
    def _metered(self, site: Site, fn, *args):
        before = self._counter.get_total_flops()
        out = fn(*args)
        self._meter[site.index] += self._counter.get_total_flops() - before
        return out

    def _branch_forward(self, site: Site, orig):
        i = site.index

        @_host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            plan = self.plans[i]
            if self._meter is not None:
                return self._metered(site, self._run_branch, site, orig, plan, args, kwargs)
            return self._run_branch(site, orig, plan, args, kwargs)

        return forward

    def _run_branch(self, site: Site, orig, plan: Plan, args, kwargs):
        key = (self.branch, site.index)
        action = plan.action
        if action is Action.FULL:
            out, keys = self._with_keys(site.module, orig, args, kwargs) if plan.keep_keys else (
                orig(*args, **kwargs), None)
            if plan.keep:
                self.store.update(key, out, self.coords, plan.order)
                if plan.keep_input:
                    self.store.entries[key].data["input"] = (args, kwargs)
                if keys:
                    self.store.entries[key].data["keys"] = keys
            else:  # only what SKIP needs to make zeros: shapes, dtypes, devices (no tensor is held)
                outs, single = as_tuple(out)
                self._shapes[key] = (tuple(None if t is None else (t.shape, t.dtype, t.device) for t in outs), single)
            return out
        if action is Action.SKIP:  # contributes nothing: zeros shaped as the site's last full output
            if key in self._shapes:
                like, single = self._shapes[key]
                zeros = tuple(None if s is None else torch.zeros(s[0], dtype=s[1], device=s[2]) for s in like)
            else:
                zeros = tuple(None if t is None else torch.zeros_like(t) for t in self.store.entries[key].out)
                single = self.store.single(key)
            return from_tuple(zeros, single)
        order = 0 if action is Action.REUSE else plan.order
        base = self.store.predict(key, self.coords, order)
        if plan.verify:  # compute it for real too: the forecast's error decides the next steps (SpeCa)
            real, _ = as_tuple(orig(*args, **kwargs))
            self.store.shared[("verify", self.branch)] = _relative_l1(base, real)
            base = real
        if action is Action.BLEND:
            fresh, _ = as_tuple(orig(*args, **kwargs))
            base = tuple(None if b is None else b + plan.weight * (f - b) for f, b in zip(fresh, base))
        elif action is Action.PARTIAL:
            x = args[0] if args else kwargs["hidden_states"]      # (B, N, D)
            sub_args, sub_kwargs = _subset_call(site, x, gather_tokens(x, plan.tokens), args, kwargs)
            fresh = orig(*sub_args, **sub_kwargs)                  # (B, k, D): the only heavy work
            base = (self._refresh(key, plan, base[0], fresh),) + tuple(base[1:])
        if order > 0:
            self.store.commit(key, base, self.coords)
        return from_tuple(base, self.store.single(key))

    def _with_keys(self, module: nn.Module, orig, args, kwargs) -> tuple:
        """Call ``orig``; return its output and the outputs of ``module``'s key projections (to_k,
        add_k_proj: (B, S, H*d)) by name, caught by hooks that live for this call only. A compiled forward
        runs without them (new hooks would make dynamo recompile) and keeps none: the score then projects."""
        keys: dict = {}
        if self._compiler is not None:
            return orig(*args, **kwargs), keys
        handles = []
        for name in ("to_k", "add_k_proj"):
            sub = getattr(module, name, None)
            if isinstance(sub, nn.Module):
                handles.append(sub.register_forward_hook(
                    lambda mod, a, out, name=name: keys.__setitem__(name, out)))
        try:
            return orig(*args, **kwargs), keys
        finally:
            for h in handles:
                h.remove()

    def _refresh(self, key, plan: Plan, base: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        """Put the ``fresh`` rows (B, k, D) into a forecast ``base`` (B, N, D) of stream 0.

        Edits are made on the anchor (the order-0 part the forecast is built on): a fresh token's anchor
        value is its fresh output minus what the forecast adds at this step, so this step returns the
        fresh output, and later forecasts extrapolate from it. Propagation (ClusCa) moves every anchor
        row towards its cluster's fresh mean there, leaving the higher-order terms unscaled; with
        ``write_back`` the edited anchor is kept until the next full step (``tokens.refresh``)."""
        anchor = self.store.entries[key].anchor[0]                 # (B, N, D)
        edited, out = refresh(anchor, base, plan.tokens, fresh, plan.propagate, keep_anchor=plan.write_back)
        if plan.write_back:
            self.store.edit(key, 0, edited)
        return out

    def _block_forward(self, site: Site, orig):
        i = site.index
        signature = inspect.signature(orig)
        spec = adapters.block_spec(site.module)

        @_host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            plan = self.plans[i]
            inputs = signature.bind_partial(*args, **kwargs).arguments
            if self._meter is not None:
                return self._metered(site, self._run_block, site, orig, plan, spec, inputs, args, kwargs)
            return self._run_block(site, orig, plan, spec, inputs, args, kwargs)

        return forward

    def _run_block(self, site: Site, orig, plan: Plan, spec: adapters.BlockSpec, inputs, args, kwargs):
        """A whole block as one site. Blocks with a known gate (``spec.finish``) cache their pre-gate
        output (captured from ``spec.pre_gate``'s forward) and apply the current step's gate and residual;
        others cache their residual (output - input)."""
        key = (self.branch, site.index)
        action = plan.action
        xs = tuple(inputs[n] for n in spec.outputs)
        if action is Action.SKIP:
            return from_tuple(xs, len(xs) == 1)
        if action is Action.PARTIAL:
            raise ValueError(f"{site.name}: whole-block sites cannot run PARTIAL")
        gated = spec.finish is not None
        if action is Action.FULL:
            out = orig(*args, **kwargs)
            outs, _ = as_tuple(out)
            value = self._captured.pop(site.index) if gated else tuple(o - x for o, x in zip(outs, xs))
            if plan.keep:
                self.store.update(key, value, self.coords, plan.order)
            return out
        order = 0 if action is Action.REUSE else plan.order
        value = self.store.predict(key, self.coords, order)
        if plan.verify:
            real = as_tuple(orig(*args, **kwargs))[0]
            real = (self._captured.pop(site.index),) if gated else tuple(o - x for o, x in zip(real, xs))
            self.store.shared[("verify", self.branch)] = _relative_l1(value, real)
            value = real
        if action is Action.BLEND:
            out = as_tuple(orig(*args, **kwargs))[0]
            fresh = (self._captured.pop(site.index),) if gated else tuple(o - x for o, x in zip(out, xs))
            value = tuple(v + plan.weight * (f - v) for f, v in zip(fresh, value))
        if order > 0:
            self.store.commit(key, value, self.coords)
        if gated:
            return adapters.FINISH[spec.finish](site.module, inputs, value[0])
        return from_tuple(tuple(x + d for x, d in zip(xs, value)), len(xs) == 1)


def _host_side(fn):
    """Keep ditcache's decisions out of torch.compile graphs: wrappers and hooks run in Python (dynamo skips
    them and everything they call), and on a compiled model each wrapped forward is compiled on its own
    (``Run._compile``), so plans that change every step never cause a recompilation."""
    return torch.compiler.disable(fn)


def _is_compiled(model) -> bool:
    return isinstance(model, nn.Module) and hasattr(model, "_orig_mod")


def _relative_l1(forecast, real) -> float:
    """sum |forecast - real| / sum |real| over every stream: one host sync (SpeCa's verification)."""
    num = sum(float((f - r).abs().sum()) for f, r in zip(forecast, real) if r is not None)
    den = sum(float(r.abs().sum()) for r in real if r is not None)
    return num / max(den, 1e-12)


_ABSENT = object()  # sentinel: the attribute was not in the instance dict before patching
_HANDLE = object()  # sentinel: the entry is a hook handle to .remove()


def _unpatch(patches: list[tuple[object, str, object]]) -> None:
    """Undo ``Run._patch`` entries, last first, and empty the list."""
    for obj, attr, old in reversed(patches):
        if old is _HANDLE:
            obj.remove()
        elif old is _ABSENT:
            obj.__dict__.pop(attr, None)
        else:
            setattr(obj, attr, old)
    patches.clear()


def _subset_call(site: Site, x: torch.Tensor, xs: torch.Tensor, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Arguments to run the branch on the gathered tokens ``xs`` (B, k, D) instead of ``x`` (B, N, D)."""
    kwargs = dict(kwargs)
    if args:
        args = (xs,) + tuple(args[1:])
    else:
        kwargs["hidden_states"] = xs
    if site.partial == "self_kv":  # queries from the subset, keys and values from every token
        if len(args) > 1:
            args = (args[0], x) + tuple(args[2:])
        else:
            kwargs["encoder_hidden_states"] = x
    return args, kwargs


def _find_model(target) -> tuple[nn.Module, object | None, object | None]:
    """(transformer, pipeline, scheduler): a bare transformer, or a pipeline holding one as
    ``.transformer`` whose scheduler delimits generations and steps."""
    if isinstance(target, nn.Module):
        return _uncompiled(target), None, None
    model = getattr(target, "transformer", None)
    if isinstance(model, nn.Module):
        scheduler = getattr(target, "scheduler", None)
        return _uncompiled(model), target, scheduler if hasattr(scheduler, "set_timesteps") else None
    raise TypeError(
        f"ditcache needs a diffusers transformer or a pipeline with a .transformer, got {type(target).__name__}"
    )


def _uncompiled(model: nn.Module) -> nn.Module:
    """The module torch.compile wrapped (hooks go on it: the compiled wrapper calls it), or the model itself."""
    return getattr(model, "_orig_mod", model)


def apply(target, method, *, steps: int | None = None, trace: bool = False, scheduler=None,
          max_cache_bytes: int | None = None, count_flops: bool = True) -> Run:
    """Hook ``method`` into a transformer or pipeline. Returns the run; ``run.remove()`` undoes it.

    steps: the step count, for a bare model in your own loop without a scheduler.
    scheduler: the diffusers scheduler your own loop uses with a bare model: its ``set_timesteps`` and
    ``step()`` then delimit generations and steps, as with a pipeline.
    trace: keep every call's plans in ``run.trace`` (replayable with ``ditcache.methods.Replay``).
    max_cache_bytes: refuse (MemoryError) after the first step when the predicted peak cache exceeds it.
    count_flops: count each plan shape's FLOPs on its first call (torch's counter slows those calls; timing
    runs switch it off and record 0 FLOPs)."""
    return Run(target, method, steps=steps, trace=trace, scheduler=scheduler, max_cache_bytes=max_cache_bytes,
               count_flops=count_flops)


@contextmanager
def cached(target, method, *, steps: int | None = None, trace: bool = False, scheduler=None,
           max_cache_bytes: int | None = None, count_flops: bool = True):
    """``with ditcache.cached(pipe_or_model, ditcache.FORA(interval=3)) as run: ...`` (see ``apply``)."""
    run = Run(target, method, steps=steps, trace=trace, scheduler=scheduler, max_cache_bytes=max_cache_bytes,
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
    from .memory import from_store
    from .methods import resolve_method

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

