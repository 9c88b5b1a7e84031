"""Following a diffusers scheduler: its ``set_timesteps`` starts a generation, its ``step()`` ends a step.

One ``SchedulerHook`` per scheduler instance, however many runs follow it (two pipelines sharing a
scheduler, the two transformers of Wan 2.2): it wraps the instance's ``set_timesteps`` and ``step`` once
and tells every listening clock. Runs come off in any order; the last one restores the scheduler.

Pipelines that ``copy.deepcopy(self.scheduler)`` (LTX-2 steps its audio latents with a copy) get a copy
that steps *itself* (its wrappers are rebuilt on the copy, never calling the original's bound methods) and
still drives the same clocks: a step is closed by whichever scheduler steps first, and closing it twice is
a no-op.
"""

from __future__ import annotations

import copy
import inspect


class _Wrapped:
    """A scheduler method that notifies the hook's listeners; keeps the method's signature (diffusers
    inspects ``set_timesteps`` for ``sigmas=``/``timesteps=``)."""

    def __init__(self, hook: SchedulerHook, name: str) -> None:
        self.hook, self.name = hook, name
        self.__wrapped__ = getattr(type(hook.scheduler), name).__get__(hook.scheduler)  # the class's method, bound
        self.__signature__ = inspect.signature(self.__wrapped__)
        self.__doc__ = self.__wrapped__.__doc__

    def __call__(self, *args, **kwargs):
        if self.name == "step":
            for clock in list(self.hook.listeners):
                clock.step_open = False
            return self.__wrapped__(*args, **kwargs)
        out = self.__wrapped__(*args, **kwargs)
        for clock in list(self.hook.listeners):
            clock.on_set_timesteps()
        return out

    def __deepcopy__(self, memo):
        return _Wrapped(copy.deepcopy(self.hook, memo), self.name)


class SchedulerHook:
    """The wrappers on one scheduler instance and the clocks that listen to them."""

    def __init__(self, scheduler, listeners: list) -> None:
        self.scheduler = scheduler
        self.listeners = listeners   # shared with deep copies of the scheduler: removal reaches them too

    def __deepcopy__(self, memo):
        new = memo.get(id(self.scheduler))  # the copy being built (copy registers it before its state)
        return SchedulerHook(new if new is not None else self.scheduler, self.listeners)


def follow(scheduler, clock) -> None:
    """Make ``clock`` follow ``scheduler`` (wrapping it on the first follower)."""
    hook = scheduler.__dict__.get("_ditcache_hook")
    if hook is None or hook.scheduler is not scheduler:
        for name in ("set_timesteps", "step"):
            if name in scheduler.__dict__:
                raise RuntimeError(f"{type(scheduler).__name__}.{name} is already patched on this instance by "
                                   "something else; ditcache cannot follow it")
        hook = SchedulerHook(scheduler, [])
        scheduler.__dict__["_ditcache_hook"] = hook
        scheduler.__dict__["set_timesteps"] = _Wrapped(hook, "set_timesteps")
        scheduler.__dict__["step"] = _Wrapped(hook, "step")
    if clock not in hook.listeners:
        hook.listeners.append(clock)


def unfollow(scheduler, clock) -> None:
    """Stop ``clock`` following ``scheduler``; the last follower restores the scheduler's own methods."""
    hook = scheduler.__dict__.get("_ditcache_hook")
    if hook is None:
        return
    if clock in hook.listeners:
        hook.listeners.remove(clock)
    if not hook.listeners:
        for name in ("_ditcache_hook", "set_timesteps", "step"):
            scheduler.__dict__.pop(name, None)
