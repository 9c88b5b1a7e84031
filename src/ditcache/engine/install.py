"""The installer: every instance-level patch and hook one run puts on a model, and their removal.

It wraps the model's ``forward`` (to see each call), the ``forward`` of every site module (the executor's
forwards) and of every block with a lean rule, a followed scheduler's ``set_timesteps`` and ``step``, and
adds forward hooks: gated blocks' pre-gate outputs (capture), a probe block's output, the final layer's
input. Every patch is logged with what it replaced; ``remove()`` undoes them last first. Nothing is patched
on classes.
"""

from __future__ import annotations

import functools

from torch import nn

from .. import adapters
from ..plan import Action, Site
from .clock import ConcurrentCall
from .execute import host_side
from .scheduler import follow, unfollow

_ABSENT = object()  # sentinel: the attribute was not in the instance dict before patching
_HANDLE = object()  # sentinel: the entry is a hook handle to .remove()


def _unpatch(patches: list[tuple]) -> None:
    """Undo ``Installer.patch`` entries, last first, and empty the list."""
    for obj, attr, old, *new in reversed(patches):
        if old is _HANDLE:
            obj.remove()
        elif new and obj.__dict__.get(attr) is not new[0] and _unwrap_diffusers(obj, attr, new[0], old):
            pass  # diffusers hooks registered after ours stay, now wrapping what ours replaced
        elif old is _ABSENT:
            obj.__dict__.pop(attr, None)
        else:
            setattr(obj, attr, old)
    patches.clear()


def _unwrap_diffusers(obj, attr: str, ours, old) -> bool:
    """Our ``forward`` was wrapped afterwards by a diffusers hook (``enable_parallelism`` after ``apply``: its
    context-parallel split hook): point the hook chain at what ours replaced, leaving the hook in place.
    False when no diffusers hook holds ours (the caller then restores the attribute)."""
    registry = getattr(obj, "_diffusers_hook", None)
    for ref in getattr(registry, "_fn_refs", ()):
        for name in ("forward", "original_forward"):
            if getattr(ref, name, None) is ours:
                setattr(ref, name, getattr(type(obj), attr).__get__(obj) if old is _ABSENT else old)
                return True
    return False


class Installer:
    """Hooks ``run`` (a ``Run``: its clock, executor, store, method) into its model."""

    def __init__(self, run) -> None:
        self.run = run
        self.restore: list[tuple[object, str, object]] = []  # (object, attribute, old value) or hook handles

    def patch(self, obj, attr: str, fn) -> None:
        self.restore.append((obj, attr, obj.__dict__.get(attr, _ABSENT), fn))
        setattr(obj, attr, fn)

    def remove(self) -> None:
        """Undo every patch and hook, the scheduler's first. Safe to call twice."""
        clock = self.run.clock
        if clock.scheduler is not None and clock.owner is self.run:
            unfollow(clock.scheduler, clock)
        _unpatch(self.restore)

    def install(self, scheduler) -> None:
        run = self.run
        self.patch(run.model, "forward", self._model_forward(self.compile(run.model.forward)))
        for site in run.sites:
            make = run.executor.block_forward if site.kind == "block" else run.executor.branch_forward
            self.patch(site.module, "forward", make(site, self.compile(site.module.forward)))
            spec = adapters.block_spec(site.block)
            if site.kind == "block" and spec.finish is not None:
                self._capture(site, getattr(site.module, spec.pre_gate))
        self._install_lean()
        verified = getattr(run.method, "verified_site", None)
        site = verified(run.sites) if callable(verified) and run.sites else None
        if site is not None and site.kind != "block":  # (a whole-block site checks its pre-gate output itself)
            block = site.block
            self.patch(block, "forward", run.executor.verify_block([s for s in run.sites if s.block is block],
                                                                   block.forward))
        if scheduler is not None:
            self.hook_scheduler(scheduler)
        probe = getattr(run.method, "probe_layer", None)
        layer = probe(run.sites) if callable(probe) else None
        if layer is not None:
            self._install_probe(layer)
        if callable(getattr(run.method, "final", None)):
            self._install_final()
        run.model._ditcache_run = run

    def _install_lean(self) -> None:
        """Wrap the forward of every branch block whose adapter has a lean rule (``BlockSpec.lean``), before
        SpeCa's verify_block so that its real pass (every branch computed) goes around the lean path."""
        run = self.run
        blocks: dict[int, list[Site]] = {}
        for site in run.sites:
            if site.kind != "block":
                blocks.setdefault(id(site.block), []).append(site)
        for sites in blocks.values():
            block = sites[0].block
            rule = adapters.lean_rule(block)
            if rule is not None:
                self.patch(block, "forward", run.executor.lean_block(sites, self.compile(block.forward), rule))

    def _model_forward(self, orig):
        run = self.run

        @host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            try:
                return run._call(orig, args, kwargs)
            except ConcurrentCall:
                raise  # another thread's generation is running: leave it as it is
            except BaseException:
                run._abort()  # a call that raised leaves nothing that changes the next generation
                raise

        return forward

    def hook_scheduler(self, scheduler) -> None:
        """Make the run's clock follow ``scheduler`` (see engine/scheduler.py): its set_timesteps starts a
        generation, its step() ends a step. A clock shared by several runs is hooked by its owner only."""
        clock = self.run.clock
        if clock.owner is not self.run:
            return
        if clock.scheduler is not None:
            unfollow(clock.scheduler, clock)
        clock.scheduler = scheduler
        follow(scheduler, clock)

    def compile(self, fn):
        """A compiled copy of a forward when the user compiled the model, else the forward itself. Calls
        whose FLOPs are being counted run eagerly: dynamo does not trace under torch's FLOP counter."""
        compiler, executor = self.run._compiler, self.run.executor
        if compiler is None:
            return fn
        compiled = compiler(fn)  # the user's compile context: same backend and options
        return functools.wraps(fn)(lambda *args, **kwargs: (fn if executor.meter is not None else compiled)(
            *args, **kwargs))

    def _capture(self, site: Site, module: nn.Module) -> None:
        """Keep ``module``'s output (a gated block's pre-gate output) when the block computes it."""
        captured = self.run.executor.captured

        @host_side
        def hook(mod, args, out):
            captured[site.index] = out

        self.restore.append((module.register_forward_hook(hook), "remove", _HANDLE))

    def _install_final(self) -> None:
        """Let the method see, and replace, the input of the model's final layer (the blocks' output on
        the image tokens): ``method.final(ctx, store, x)`` returns a tensor to use instead, or None."""
        run = self.run
        name = run.spec.final
        module = getattr(run.model, name, None) if name else None
        if not isinstance(module, nn.Module):
            raise ValueError(f"{type(run.method).__name__} needs the model's final layer, and "
                             f"{type(run.model).__name__} has no '{name}' module: set ModelSpec.final")

        @host_side
        def hook(mod, args, kwargs):
            if run.executor.passthrough:
                return None
            x = args[0] if args else kwargs["hidden_states"]
            new = run.method.final(run._ctx, run.store, x)
            if new is None:
                return None
            return ((new,) + tuple(args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": new})

        self.restore.append((module.register_forward_pre_hook(hook, with_kwargs=True), "remove", _HANDLE))

    def _install_probe(self, layer: int) -> None:
        """Keep the image-stream output of block ``layer`` of each FULL call in ``store.shared``
        (key ("probe", branch)), and its text stream where the block returns one ("probe-text")."""
        executor, store = self.run.executor, self.run.store
        sites = [s for s in self.run.sites if s.layer == layer]
        if not sites:
            raise ValueError(f"probe layer {layer} is out of range (0..{self.run.sites[-1].layer})")
        block, image_out = sites[0].block, adapters.block_spec(sites[0].block).image_out

        @host_side
        def hook(module, args, out):
            if not executor.passthrough and executor.plans[sites[0].index].action is Action.FULL:
                store.shared[("probe", executor.branch)] = out if image_out is None else out[image_out]
                if image_out is not None and len(out) == 2:  # (text, image) or (image, text)
                    store.shared[("probe-text", executor.branch)] = out[1 - image_out]

        handle = block.register_forward_hook(hook)
        self.restore.append((handle, "remove", _HANDLE))
