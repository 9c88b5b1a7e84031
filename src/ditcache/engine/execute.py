"""The executor: runs one site under the current model call's plan.

``Run`` hands it each call's plans (one per site), CFG branch and store coordinates; the forwards it
makes (``branch_forward`` for a branch module, ``block_forward`` for a whole block) then only look up
their plan. FULL computes and feeds the store; REUSE / FORECAST read it; PARTIAL computes a token
subset into a forecast; BLEND and verify compute and mix; SKIP contributes zeros (branch) or the
block's input (block). Per site it also meters FLOPs, on the first call of each plan shape.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from .. import adapters
from ..forecast.common import Coords, apply_terms
from ..parallel import SOLO, ContextGroup
from ..plan import Action, Plan, Site
from ..store import Store, as_tuple, from_tuple
from ..tokens import edit_anchor, gather_tokens, refresh, rise_at


def host_side(fn):
    """Keep ditcache's decisions out of torch.compile graphs: wrappers and hooks run in Python (dynamo skips
    them and everything they call), and on a compiled model each wrapped forward is compiled on its own
    (``Installer.compile``), so plans that change every step never cause a recompilation."""
    return torch.compiler.disable(fn)


class Executor:
    """The per-call state the site forwards read, and the forwards themselves."""

    def __init__(self, sites: list[Site], store: Store, compiled: bool) -> None:
        self.store = store
        self.compiled = compiled        # the user compiled the model: no per-call hooks on key projections
        self.plans: list[Plan] = []     # this call's plan per site
        self.branch = 0                 # this call's CFG branch: the first half of every store key
        self.coords = Coords(0.0, 0)    # where this call's step is (timestep value, step index)
        self.ran = [False] * len(sites)  # per site: has it run in this call (a second run is an error)
        self.captured: dict[int, torch.Tensor] = {}  # pre-gate outputs of gated whole-block sites (FULL calls)
        self.shapes: dict = {}  # (branch, site) -> ((shape, dtype, device) per stream, single) of unkept FULLs
        self.meter: list[int] | None = None  # per site FLOPs, while a call's FLOPs are counted
        self.counter = None             # torch's FlopCounterMode, while a call's FLOPs are counted
        self.verify_flops = 0           # of those, the FLOPs of sites computed only to check a forecast (planning)
        self.passthrough = False        # this call is outside any generation: every site computes, nothing kept
        self.real: frozenset[int] = frozenset()  # sites rerun for real to check their block's forecast (SpeCa)
        self.shards = SOLO              # the context-parallel group this call's tokens are sharded over
        self.lean = True                # blocks with a lean rule skip their branches' norms on all-cached calls
        #                                 (off: every block runs its own forward; the A/B of benchmarks/lean.py)
        self.dense = True               # lean blocks copy a channels-first (B, N, D) stream contiguous (off: as
        #                                 the model laid it out; the A/B of benchmarks/lean.py --switch dense)
        self.origs: dict[int, object] = {}  # site index -> the branch module's own forward (lean PARTIAL calls)

    def begin(self, plans: list[Plan], branch: int, coords: Coords, passthrough: bool = False) -> None:
        """A model call starts: its plans, branch and coordinates; no site has run yet."""
        self.passthrough = passthrough
        self.plans = plans
        self.branch = branch
        self.coords = coords
        self.ran = [False] * len(plans)

    def _metered(self, site: Site, fn, *args):
        before = self.counter.get_total_flops()
        out = fn(*args)
        self.meter[site.index] += self.counter.get_total_flops() - before
        return out

    def _verifying(self, orig, *args, **kwargs):
        """``orig`` run to check a forecast (SpeCa): while FLOPs are counted, its FLOPs are planning's."""
        if self.counter is None:
            return orig(*args, **kwargs)
        before = self.counter.get_total_flops()
        out = orig(*args, **kwargs)
        self.verify_flops += self.counter.get_total_flops() - before
        return out

    def _claim(self, site: Site) -> Plan:
        """This call's plan for ``site``, marking the site as run: a second run in the same model call (a block
        calling its module twice, a module shared by two blocks) would reuse one cached output twice."""
        i = site.index
        if self.ran[i]:
            raise RuntimeError(_twice(site))
        self.ran[i] = True
        return self.plans[i]

    # ----------------------------------------------------------------- branch sites
    def branch_forward(self, site: Site, orig):
        """The forward for a branch module: its plan, then ``orig`` or the store."""
        self.origs[site.index] = orig

        @host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            if site.index in self.real:  # its block's real pass (verify_block): computed, nothing stored
                return orig(*args, **kwargs)
            plan = self._claim(site)
            if self.meter is not None:
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
                self.shapes[key] = (tuple(None if t is None else (t.shape, t.dtype, t.device) for t in outs), single)
            return out
        if action is Action.SKIP:  # contributes nothing: zeros shaped as the site's last full output
            if key in self.shapes:
                like, single = self.shapes[key]
                zeros = tuple(None if s is None else torch.zeros(s[0], dtype=s[1], device=s[2]) for s in like)
            else:
                zeros = tuple(None if t is None else torch.zeros_like(t) for t in self.store.entries[key].out)
                single = self.store.single(key)
            return from_tuple(zeros, single)
        if action is Action.REUSE or action is Action.FORECAST:
            return self._cached(key, plan)
        if action is Action.PARTIAL:
            x = args[0] if args else kwargs["hidden_states"]      # (B, N, D)

            def compute(idx):  # (B, k) -> (B, k, D): the branch on the gathered rows
                sub_args, sub_kwargs = _subset_call(site, x, gather_tokens(x, idx), args, kwargs)
                return orig(*sub_args, **sub_kwargs)

            return self._partial(key, plan, compute)
        order = plan.order
        base = self.store.predict(key, self.coords, order)  # (a verified branch is checked by verify_block)
        if action is Action.BLEND:
            fresh, _ = as_tuple(orig(*args, **kwargs))
            base = tuple(None if b is None else b + plan.weight * (f - b) for f, b in zip(fresh, base))
        if order > 0:
            self.store.commit(key, base, self.coords)
        return from_tuple(base, self.store.single(key))

    def _partial(self, key, plan: Plan, compute):
        """A PARTIAL branch's output: its forecast with the rows ``plan.tokens`` (B, k) of stream 0 computed
        afresh by ``compute(idx)`` -> (B, k, D) (the only heavy work).

        Edits are made on the anchor (the order-0 part the forecast is built on): a fresh token's anchor
        value is its fresh output minus what the forecast adds there at this step, so this step returns the
        fresh output, and later forecasts extrapolate from it. Propagation (ClusCa) moves every anchor
        row towards its cluster's fresh mean, leaving the higher-order terms unscaled; with ``write_back``
        the edited anchor is kept until the next full step. A forecaster that gives its terms (the forecast
        is the anchor plus sum w F): the forecast is read at the k rows, the anchor edited, and the forecast
        built once on the edited anchor (``tokens.edit_anchor``; with propagation three full-size passes for
        order 1, where forecasting first and then moving the output as the anchor took five). Any other
        forecaster: the forecast is made, then refreshed (``tokens.refresh``)."""
        terms = self.store.terms(key, self.coords, plan.order)
        anchor = self.store.entries[key].anchor                   # per stream (B, N, D)
        fresh = compute(plan.tokens)                               # (B, k, D)
        reduce = self.shards.all_reduce if plan.valid is not None and plan.propagate is not None else None
        if terms is None:
            base = self.store.predict(key, self.coords, plan.order)
            edited, out = refresh(anchor[0], base[0], plan.tokens, fresh, plan.propagate,
                                  keep_anchor=plan.write_back, valid=plan.valid, reduce=reduce)
            base = (out,) + tuple(base[1:])
        else:
            rise = rise_at(terms, 0, plan.tokens)                  # (B, k, D) in the factors' dtype, or None
            value = fresh if rise is None else fresh.to(rise.dtype) - rise
            edited = edit_anchor(anchor[0], plan.tokens, value, plan.propagate, valid=plan.valid, reduce=reduce)
            base = apply_terms((edited,) + tuple(anchor[1:]), terms)
        if plan.write_back:
            self.store.edit(key, 0, edited)
        if plan.order > 0:
            self.store.commit(key, base, self.coords)
        return from_tuple(base, self.store.single(key))

    def _cached(self, key, plan: Plan):
        """A REUSE or FORECAST branch's output from the store, shaped as the module returns it; a forecast is
        committed (methods that correct it later read what this step returned)."""
        order = 0 if plan.action is Action.REUSE else plan.order
        base = self.store.predict(key, self.coords, order)  # (a verified branch is checked by verify_block)
        if order > 0:
            self.store.commit(key, base, self.coords)
        return from_tuple(base, self.store.single(key))

    def lean_block(self, sites: list[Site], orig, rule: adapters.LeanRule):
        """The forward of a branch block with a lean rule (``BlockSpec.lean``): on a call where every one of
        its ``sites`` reuses or forecasts, the rule builds the block's output from the cached branch outputs
        alone, skipping the norms and modulations that only feed the branches (their results would be thrown
        away). Branches the rule names in ``rule.partial`` may instead compute a token subset (PARTIAL): the
        rule hands their input at the chosen rows, so the norms feeding them run on k rows instead of N. Any
        other call, a call the rule declines (it returns None before reading a branch), and every call while
        ``lean`` is off run ``orig``, whose branch forwards then take their plans as usual."""
        block = sites[0].block
        spec = adapters.block_spec(block)
        by_child = {b.child: s for b in spec.branches for s in sites if getattr(block, b.child, None) is s.module}
        indices = [s.index for s in sites]
        # sites whose PARTIAL plans the rule serves: per-token branches ("tokens" path) it names
        fed = frozenset(s.index for child, s in by_child.items() if child in rule.partial and s.partial == "tokens")
        signature = inspect.signature(orig)
        cheap = (Action.REUSE, Action.FORECAST)

        def served(i: int) -> bool:
            plan = self.plans[i]
            return not plan.verify and (plan.action in cheap or (plan.action is Action.PARTIAL and i in fed))

        def cached(child: str, rows=None):
            site = by_child[child]
            plan = self._claim(site)
            key = (self.branch, site.index)
            if plan.action is not Action.PARTIAL:
                return self._cached(key, plan)
            if rows is None:
                raise RuntimeError(f"ditcache: lean rule {spec.lean!r} read {site.name}, planned PARTIAL, without its "
                                   "input rows (cached(child, rows))")
            compute = functools.partial(self._partial, key, plan, lambda idx: self.origs[site.index](rows(idx)))
            return self._metered(site, compute) if self.meter is not None else compute()

        @host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            if not self.lean or self.passthrough or self.real or not all(served(i) for i in indices):
                return orig(*args, **kwargs)
            arguments = signature.bind(*args, **kwargs).arguments
            if self.dense:
                arguments = {name: _dense(value) for name, value in arguments.items()}
            out = rule.build(block, arguments, cached)
            if out is None:
                return orig(*args, **kwargs)
            if not all(self.ran[i] for i in indices):  # an unread branch would miss this step's commit
                missed = [s.name for s in sites if not self.ran[s.index]]
                raise RuntimeError(f"ditcache: lean rule {spec.lean!r} did not read the cached output of {missed}")
            return out

        return forward

    def _with_keys(self, module: nn.Module, orig, args, kwargs) -> tuple:
        """Call ``orig``; return its output and the outputs of ``module``'s key projections (to_k,
        add_k_proj: (B, S, H*d)) by name, caught by hooks that live for this call only. A compiled forward
        runs without them (new hooks would make dynamo recompile) and keeps none: the score then projects."""
        keys: dict = {}
        if self.compiled:
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

    def verify_block(self, sites: list[Site], orig):
        """The forward of a block whose branch sites a method checks (SpeCa: the reference checks its last
        block's output hidden state). On a call where one of ``sites`` is planned with ``verify``, the block
        runs as planned (the draft), then again with every one of its branches computed and nothing stored
        (the real pass, its FLOPs counted as the check's). The error, sum |draft - real| / sum |real - x|
        over the image stream (x the block's input hidden state), goes to ``store.shared[("verify",
        branch)]`` and the real output is returned. The difference of the outputs is the reference's; it is
        taken relative to what the block adds to x rather than to the whole hidden state, so that one
        threshold serves this check and a whole-block site's check of its pre-gate output alike."""
        indices = frozenset(s.index for s in sites)
        image_out = adapters.block_spec(sites[0].block).image_out

        @host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            if self.passthrough or not any(self.plans[i].verify for i in indices):
                return orig(*args, **kwargs)
            draft = orig(*args, **kwargs)
            self.real = indices
            try:
                real = self._verifying(orig, *args, **kwargs)
            finally:
                self.real = frozenset()
            x = args[0] if args else kwargs["hidden_states"]                  # (B, N, D)
            d, r = (out if isinstance(out, torch.Tensor) else out[image_out] for out in (draft, real))
            self.store.shared[("verify", self.branch)] = _relative_l1((d - x,), (r - x,), self.shards)
            return real

        return forward

    # ----------------------------------------------------------------- whole-block sites
    def block_forward(self, site: Site, orig):
        """The forward for a block cached as one site: its plan, then ``orig`` or the store."""
        signature = inspect.signature(orig)
        spec = adapters.block_spec(site.module)

        @host_side
        @functools.wraps(orig)
        def forward(*args, **kwargs):
            plan = self._claim(site)
            inputs = signature.bind_partial(*args, **kwargs).arguments
            if self.meter is not None:
                return self._metered(site, self._run_block, site, orig, plan, spec, inputs, args, kwargs)
            return self._run_block(site, orig, plan, spec, inputs, args, kwargs)

        return forward

    def _pre_gate(self, site: Site) -> torch.Tensor:
        """The pre-gate output the block's capture hook kept on this call (``Installer._capture``). Missing when
        the block ran code that torch.compile traced without that hook: dynamo does not guard on module hooks
        (``torch._dynamo.config.skip_nnmodule_hook_guards``), so a graph traced for another instance of the same
        block class, such as a copy of the model compiled with other caching hooks inside, can run here."""
        if site.index not in self.captured:
            raise RuntimeError(
                f"{site.name}: the block ran without ditcache's hook on its pre-gate output, so its cache cannot "
                "be filled: torch.compile reused a graph traced for another copy of this block class (dynamo skips "
                "guards on module hooks). Call torch._dynamo.reset() before this run.")
        return self.captured.pop(site.index)

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
            value = self._pre_gate(site) if gated else tuple(o - x for o, x in zip(outs, xs))
            if plan.keep:
                self.store.update(key, value, self.coords, plan.order)
            return out
        order = 0 if action is Action.REUSE else plan.order
        value = self.store.predict(key, self.coords, order)
        if plan.verify:
            real = as_tuple(self._verifying(orig, *args, **kwargs))[0]
            real = (self._pre_gate(site),) if gated else tuple(o - x for o, x in zip(real, xs))
            self.store.shared[("verify", self.branch)] = _relative_l1(value, real, self.shards)
            value = real
        if action is Action.BLEND:
            out = as_tuple(orig(*args, **kwargs))[0]
            fresh = (self._pre_gate(site),) if gated else tuple(o - x for o, x in zip(out, xs))
            value = tuple(v + plan.weight * (f - v) for f, v in zip(fresh, value))
        if order > 0:
            self.store.commit(key, value, self.coords)
        if gated:
            return adapters.FINISH[spec.finish](site.module, inputs, value[0])
        return from_tuple(tuple(x + d for x, d in zip(xs, value)), len(xs) == 1)


def _dense(value):
    """A token stream (B, N, D) whose channels are not adjacent in memory, copied contiguous; anything else as
    it is. The patch embedding of DiT, PixArt, Latte and HunyuanVideo leaves the hidden states channels-first
    (a transposed view, strides (N*D, 1, N)). DiT's first block adds its branch outputs first, so its output is
    contiguous, but a lean rule adds onto x (x + gate * branch) and would keep x's layout in every block, and
    an elementwise op mixing the two layouts runs about 5x slower than on two contiguous tensors (dit256 at
    batch 25 with CFG, 2 threads: 1.40 ms against 0.24 ms for an addcmul). One copy in the first lean block
    lays the rest of the call out contiguously; the values are the same. A view of rows (a slice of a joint
    text-image stream: channels adjacent) is left as it is: elementwise ops on it run at full speed."""
    if isinstance(value, torch.Tensor) and value.ndim == 3 and value.shape[-1] > 1 and value.stride(-1) != 1:
        return value.contiguous()
    return value


def _twice(site: Site) -> str:
    # keyed by (branch, site), a second call would silently get the first call's cached output
    return (f"ditcache: site {site.name} ran twice in one model call; its block calls the module more than once, "
            "so its cache cannot be keyed by site. Map the block as one whole-block site instead "
            "(ditcache.register_block(cls, Branch('', 'block'), outputs=...))")


def _relative_l1(forecast, real, shards: ContextGroup = SOLO) -> float:
    """sum |forecast - real| / sum |real| over every stream: one host sync (SpeCa's verification). Under
    context parallelism both sums are reduced over the ranks' shards first: every rank gets the whole
    sequence's error, so every rank takes the same next step (a rank that computed it while another reused
    it would deadlock both in the attention's collectives)."""
    if shards.active:
        sums = torch.stack([sum((f - r).abs().sum() for f, r in zip(forecast, real) if r is not None),
                            sum(r.abs().sum() for r in real if r is not None)]).double()
        num, den = shards.all_reduce(sums).tolist()
        return num / max(den, 1e-12)
    num = sum(float((f - r).abs().sum()) for f, r in zip(forecast, real) if r is not None)
    den = sum(float(r.abs().sum()) for r in real if r is not None)
    return num / max(den, 1e-12)


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
