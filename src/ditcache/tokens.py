"""Token-level tools: importance scores, the spatial bonus, top-k choice, k-means, and refreshing a forecast's rows
(ClusCa's propagation included).

Scores are computed from a FULL step's attention *inputs*, on a separate path: the module itself
always runs through its own (fused) attention kernel, so caching never turns fused attention off.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_qwenimage import apply_rotary_emb_qwen
from torch import nn


def _heads(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """(B, N, H*d) -> (B, N, H, d), d the query heads' width: keys of grouped-query attention (AceStep,
    Stable Audio) have fewer heads of the same width."""
    to_q = getattr(module, "to_q", None)
    width = to_q.out_features // module.heads if isinstance(to_q, nn.Linear) else t.shape[-1] // module.heads
    return t.unflatten(-1, (-1, width))


def _project(module: nn.Module, linear: str, norm: str, x: torch.Tensor, done: dict | None = None) -> torch.Tensor:
    """(B, N, D) -> (B, N, H, d): a projection and its q/k norm, which some models (Wan) apply over all
    heads at once and others (DiT, Flux) per head. done: projections the module already computed on
    ``x`` (name -> (B, N, H*d), kept by the engine), used instead of projecting again."""
    t = done.get(linear) if done else None
    if t is None or t.shape[:-1] != x.shape[:-1]:  # not kept, or computed on other tokens (a joined sequence)
        t = getattr(module, linear)(x)                                             # (B, N, H*d)
    n = getattr(module, norm, None)
    shape = getattr(n, "normalized_shape", None) or getattr(getattr(n, "weight", None), "shape", None)
    if n is not None and shape is not None and shape[-1] == t.shape[-1]:
        return _heads(module, n(t))
    t = _heads(module, t)
    return t if n is None else n(t)


def query_key(module: nn.Module, x: torch.Tensor, context: torch.Tensor | None = None, rotary=None,
              joint: bool = False, text_first: bool = True, query_stride: int = 1,
              keys: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys (B, S, H, d) as a diffusers attention module computes them (``_query_key``); under
    grouped-query attention each key head is repeated for the query heads it serves, as torch's attention
    does (query head i reads key head i // (H / H_kv))."""
    q, k = _query_key(module, x, context, rotary, joint, text_first, query_stride, keys)
    if k.shape[2] != q.shape[2] and q.shape[2] % k.shape[2] == 0:
        k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    return q, k


def _query_key(module: nn.Module, x: torch.Tensor, context: torch.Tensor | None, rotary, joint: bool,
               text_first: bool, query_stride: int, keys: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys as a diffusers attention module computes them.

    joint: ``context`` is a second stream attended jointly: placed before the image tokens with the
    rotary table covering both (Flux, SD3: ``text_first``), or after them with the rotary table covering
    the image tokens only (HunyuanVideo).
    query_stride: only every query_stride-th query row (self- or cross-attention without rotary tables;
    projected from those rows only, so the score's cost falls with it).
    keys: the raw key projections the module computed on these inputs (to_k, add_k_proj outputs), if kept:
    the keys then cost no projection, only their norm and rotation.
    """
    kv_source = x if joint or context is None else context
    if _per_stream(rotary):  # Qwen-Image: (image freqs, text freqs), complex, each stream rotated on its own
        q = apply_rotary_emb_qwen(_project(module, "to_q", "norm_q", x), rotary[0], use_real=False)
        k = apply_rotary_emb_qwen(_project(module, "to_k", "norm_k", x, keys), rotary[0], use_real=False)
        if not (joint and context is not None):
            return q, k
        cq = apply_rotary_emb_qwen(_project(module, "add_q_proj", "norm_added_q", context), rotary[1], use_real=False)
        ck = apply_rotary_emb_qwen(_project(module, "add_k_proj", "norm_added_k", context, keys), rotary[1],
                                   use_real=False)
        return (torch.cat([cq, q], 1), torch.cat([ck, k], 1)) if text_first else (torch.cat([q, cq], 1),
                                                                                  torch.cat([k, ck], 1))
    if query_stride > 1 and not joint and rotary is None:
        x = x[:, ::query_stride]
    q = _project(module, "to_q", "norm_q", x)
    k = _project(module, "to_k", "norm_k", kv_source, keys)
    if joint and context is not None and not text_first:
        if rotary is not None:  # the image tokens alone are rotated
            q = apply_rotary_emb(q, rotary, sequence_dim=1)
            k = apply_rotary_emb(k, rotary, sequence_dim=1)
        cq = _project(module, "add_q_proj", "norm_added_q", context)
        ck = _project(module, "add_k_proj", "norm_added_k", context, keys)
        return torch.cat([q, cq], 1), torch.cat([k, ck], 1)
    if joint and context is not None:
        cq = _project(module, "add_q_proj", "norm_added_q", context)
        ck = _project(module, "add_k_proj", "norm_added_k", context, keys)
        q, k = torch.cat([cq, q], 1), torch.cat([ck, k], 1)
    if rotary is not None:
        q = apply_rotary_emb(q, rotary, sequence_dim=1)
        k = apply_rotary_emb(k, rotary, sequence_dim=1)
    return q, k


def _per_stream(rotary) -> bool:
    """A rotary table given per stream as complex frequencies (Qwen-Image's (image (S_img, d/2), text (S_txt,
    d/2))), not one real (cos, sin) pair over the joined sequence."""
    return (isinstance(rotary, (tuple, list)) and len(rotary) == 2
            and all(isinstance(r, torch.Tensor) and r.is_complex() for r in rotary))


def key_bias(mask: torch.Tensor | None, batch: int, keys: int) -> torch.Tensor | None:
    """An attention mask over the keys as an additive bias (B, 1, Sk): diffusers passes either a bool
    keep-mask or an already additive bias ((B, 1, Sk) or (B, Sk)), e.g. PixArt's padded text tokens."""
    if mask is None:
        return None
    mask = mask.reshape(batch, -1, keys)[:, :1]                                # (B, 1, Sk)
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.float()


def _per_head_probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None):
    """Yield softmax(q k^T / sqrt(d) + bias) per head, (B, Sq, Sk), one head at a time to bound memory."""
    scale = q.shape[-1] ** -0.5
    for h in range(q.shape[2]):
        logits = q[:, :, h] @ k[:, :, h].transpose(1, 2) * scale                 # (B, Sq, Sk)
        yield torch.softmax(logits if bias is None else logits + bias, dim=-1)


@torch.no_grad()
def attention_received(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                       queries: int | None = None) -> torch.Tensor:
    """(B, Sk): how much attention each key token receives, summed over queries, averaged over heads.
    mask: the module's attention mask over the keys (padded text tokens receive none).
    queries: estimate the sum from every (Sq // queries)-th query only, scaled back to Sq (an evenly spread
    sample of the rows: the map costs Sq * Sk per head, so this bounds the score's cost as tokens grow)."""
    sq = q.shape[1]
    if queries is not None and sq > queries:
        stride = sq // queries
        q = q[:, ::stride]
    total = None
    for p in _per_head_probs(q, k, key_bias(mask, q.shape[0], k.shape[1])):
        s = p.sum(1)  # (B, Sk)
        total = s if total is None else total + s
    return total * (sq / q.shape[1]) / q.shape[2]


@torch.no_grad()
def attention_entropy(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, Sq): entropy of each query's head-mean attention over the keys (cross-attention: text).
    mask: the module's attention mask over the keys (padded text tokens get no attention)."""
    mean = None
    for p in _per_head_probs(q, k, key_bias(mask, q.shape[0], k.shape[1])):
        mean = p if mean is None else mean + p
    mean = mean / q.shape[2]
    return -(mean * torch.log(mean + 1e-7)).sum(-1)


@torch.no_grad()
def key_norm(module: nn.Module, x: torch.Tensor, keys: dict | None = None, linear: str = "to_k",
             norm: str = "norm_k") -> torch.Tensor:
    """(B, N): L2 norm of each token's key; needs no attention map (a flash-friendly proxy).
    keys: raw key projections already computed on ``x`` (see query_key); linear/norm: the text stream's
    (add_k_proj, norm_added_k) for a joint block's context."""
    return _project(module, linear, norm, x, keys).norm(dim=-1).mean(-1)


def l2_normalise(s: torch.Tensor) -> torch.Tensor:
    """(B, N) scores scaled to unit L2 norm per sample."""
    return s / s.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def spatial_bonus(score: torch.Tensor, grid: tuple[int, int, int], cell: int, beta: float) -> torch.Tensor:
    """ToCa's uniformity term: in each cell x cell block of the (F, H, W) token grid, the top token's
    score is multiplied by (1 + beta). Rows/columns past the last whole cell get no bonus."""
    f, h, w = grid
    if beta == 0 or cell <= 1 or h < cell or w < cell:
        return score
    b = score.shape[0]
    hh, ww = h // cell * cell, w // cell * cell
    s = score.reshape(b, f, h, w)[:, :, :hh, :ww]
    blocks = s.reshape(b, f, hh // cell, cell, ww // cell, cell).permute(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(b, f, hh // cell, ww // cell, cell * cell)
    top = torch.zeros_like(blocks).scatter_(-1, blocks.argmax(-1, keepdim=True), beta)
    bonus = top.reshape(b, f, hh // cell, ww // cell, cell, cell).permute(0, 1, 2, 4, 3, 5).reshape(b, f, hh, ww)
    full = torch.zeros(b, f, h, w, dtype=score.dtype, device=score.device)
    full[:, :, :hh, :ww] = bonus
    return score * (1 + full.reshape(b, -1))


def top_k(score: torch.Tensor, k: int, tie_halves: bool = False) -> torch.Tensor:
    """(B, k) indices of the highest scores. tie_halves: the batch is [uncond; cond] and both halves
    take the tokens chosen from their mean score (PixArt's ToCa behaviour)."""
    if tie_halves:
        half = score.shape[0] // 2
        idx = (score[:half] + score[half:]).topk(k, dim=-1).indices
        return torch.cat([idx, idx])
    return score.topk(k, dim=-1).indices


DISTANCES = ("l1", "l2")


def distances(x: torch.Tensor, c: torch.Tensor, distance: str, xx: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N, D), (B, K, D) -> (B, N, K). "l1": the reference's cdist p=1 (no BLAS path); "l2": squared
    Euclidean through one matrix product, ||x||^2 - 2 x.c + ||c||^2 (argmin-equivalent to L2); xx: the
    (B, N, 1) ||x||^2 if the caller has it."""
    if distance == "l1":
        return torch.cdist(x, c, p=1)
    xx = (x * x).sum(-1, keepdim=True) if xx is None else xx
    return torch.baddbmm((c * c).sum(-1).unsqueeze(1), x, c.transpose(1, 2), alpha=-2).add_(xx)


def _assign(x: torch.Tensor, c: torch.Tensor, distance: str) -> torch.Tensor:
    """(B, N) nearest centroid; for L2, ||x||^2 is the same for every centroid and is left out:
    ||c||^2 - 2 x.c in one fused matrix product (B, N, K)."""
    if distance == "l1":
        return torch.cdist(x, c, p=1).argmin(-1)
    # the centroids transposed to contiguous (B, D, K): baddbmm on the strided view takes twice as long
    return torch.baddbmm((c * c).sum(-1).unsqueeze(1), x, c.transpose(1, 2).contiguous(), alpha=-2).argmin(-1)


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, init: torch.Tensor | None = None, max_iters: int = 100, tol: float = 1e-4,
           generator: torch.Generator | None = None, distance: str = "l1") -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batched k-means (ClusCa). x (B, N, D) -> labels (B, N), centroids (B, k, D), iterations run.

    init: centroids to start from (warm start from the previous full step); else k-means++ seeding
    (the reference starts from random tokens, which can put two seeds in one cluster and stay there).
    An empty cluster keeps its previous centroid (it does not collapse to zero). Cluster sums are one
    index_add over the flattened rows (a third of the time of a one-hot matrix product at 32 x 256 x 128).
    A sample stops when its centroids move less than ``tol`` (relative); iterations: the most any ran.
    """
    b, n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= K <= number of tokens ({n}), got K={k}")
    if distance not in DISTANCES:
        raise ValueError(f"k-means distance must be one of {DISTANCES}, got {distance!r}")
    x = x.contiguous()
    centroids = _kmeans_pp(x, k, generator, distance) if init is None else init.clone()
    labels = torch.zeros(b, n, dtype=torch.long, device=x.device)
    # each sample stops on its own once its centroids settle (warm-started ones take a median 5-7 of 10
    # iterations on dit256, a few take more): only the samples still moving are iterated
    active = torch.arange(b, device=x.device)                                   # (A,) samples still moving
    xa, ca = x, centroids                                                       # (A, N, D), (A, k, D)
    iters = 0
    for iters in range(1, max_iters + 1):
        a = xa.shape[0]
        la = _assign(xa, ca, distance)                                          # (A, N)
        flat = _flat_rows(la, k)                                                # (A * N,) rows of (A * k)
        sums = torch.zeros(a * k, d, dtype=x.dtype, device=x.device).index_add_(0, flat, xa.view(a * n, d))
        counts = torch.bincount(flat, minlength=a * k).to(x.dtype).view(a, k, 1)  # (A, k, 1)
        new = torch.where(counts > 0, sums.view(a, k, d) / counts.clamp_min(1), ca)
        moving = ((new - ca).abs() > tol * 1e-2 + tol * ca.abs()).flatten(1).any(1)  # (A,): not allclose
        labels[active], centroids[active] = la, new
        if not bool(moving.any()):
            break
        if not bool(moving.all()):
            active, xa, new = active[moving], xa[moving], new[moving]
        ca = new
    return labels, centroids, iters


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator | None, distance: str) -> torch.Tensor:
    """k-means++ seeds (B, k, D): each next seed drawn with probability proportional to its distance
    from the nearest seed so far (||x||^2 computed once for all k draws)."""
    b, n, d = x.shape
    rows = torch.arange(b, device=x.device)
    xx = (x * x).sum(-1, keepdim=True) if distance == "l2" else None           # (B, N, 1)
    first = torch.randint(n, (b,), generator=generator).to(x.device)
    seeds = [x[rows, first]]                                                    # k x (B, D)
    dist = distances(x, seeds[0].unsqueeze(1), distance, xx).squeeze(-1)        # (B, N)
    for _ in range(1, k):
        weights = (dist.clamp_min(0) + 1e-12).cpu()                             # the generator draws on the host
        pick = torch.multinomial(weights, 1, generator=generator).squeeze(-1).to(x.device)  # (B,)
        seeds.append(x[rows, pick])
        dist = torch.minimum(dist, distances(x, seeds[-1].unsqueeze(1), distance, xx).squeeze(-1))
    return torch.stack(seeds, 1)


def one_per_cluster(labels: torch.Tensor, k: int, generator: torch.Generator | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
    """(B, k) indices: one uniformly random member of each cluster. An empty cluster lends its slot to a
    random token that no other cluster chose (so the k indices are distinct when k <= N). ``noise`` (B, N):
    the random priorities in [0, 1), if the caller drew them (else drawn from ``generator``)."""
    b, n = labels.shape
    if noise is None:
        noise = torch.rand(b, n, generator=generator).to(labels.device)         # (B, N) random priorities
    best = torch.full((b, k), -1.0, device=labels.device).scatter_reduce(1, labels, noise, "amax")  # (B, k)
    winner = noise == best.gather(1, labels)                                    # (B, N): its cluster's pick
    slot = torch.where(winner, labels, k)                                       # losers go to a spare column
    tokens = torch.arange(n, device=labels.device).expand(b, -1)
    idx = torch.zeros(b, k + 1, dtype=torch.long, device=labels.device).scatter_(1, slot, tokens)[:, :k]
    found = best >= 0                                                           # (B, k)
    if bool(found.all()):
        return idx
    chosen = torch.zeros(b, n, device=labels.device).scatter_add_(1, idx, found.float()) > 0  # (B, N)
    spare = noise.masked_fill(chosen, -1.0).topk(k, dim=1).indices             # unchosen tokens, best first
    rank = (~found).long().cumsum(1) - 1                                        # j-th empty cluster -> j-th spare
    return torch.where(found, idx, spare.gather(1, rank.clamp_min(0)))


def _flat_rows(idx: torch.Tensor, n: int) -> torch.Tensor:
    """(B, k) row indices into N rows per sample -> (B * k,) indices into the flattened (B * N) rows."""
    return (idx + torch.arange(idx.shape[0], device=idx.device).unsqueeze(1) * n).reshape(-1)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), idx (B, k) -> (B, k, D). index_select on the flattened rows: on the CPU about 10x
    faster than advanced indexing (and that than gather with an expanded index) for a (B, N) idx, as
    ClusCa's cluster means spread to every token (20 x 648 x 128: 0.8 ms against 9 ms). A tensor whose rows
    cannot be flattened without a copy (a hidden state kept in the patch embedding's channels-first layout, as
    DiT's is; a slice of a joint sequence) is indexed in place instead: flattening it copied all of it to read
    k rows (32 x 256 x 128, k 16: 0.9 ms against 0.1 ms)."""
    b, n, d = x.shape
    if b > 1 and x.stride(0) != n * x.stride(1):                               # rows not one flat run of B * N
        return x[torch.arange(b, device=x.device).unsqueeze(1), idx]           # (B, k, D)
    return x.reshape(b * n, d).index_select(0, _flat_rows(idx, n)).view(b, idx.shape[1], d)


def scatter_tokens(base: torch.Tensor, idx: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """A copy of base (B, N, D) with rows idx (B, k) replaced by fresh (B, k, D)."""
    b, n, d = base.shape
    out = base.clone(memory_format=torch.contiguous_format)
    out.view(b * n, d).index_copy_(0, _flat_rows(idx, n), fresh.to(base.dtype).reshape(-1, d))
    return out


def rise_at(terms: list, stream: int, idx: torch.Tensor) -> torch.Tensor | None:
    """What a forecast adds to its anchor at rows idx (B, k) of one stream: sum w F[stream] there, (B, k, D)
    in the factors' dtype; ``terms`` [(w, F)] as ``forecast.common.apply_terms`` takes them (w a float or a
    (D,) weight per channel). None when there are none (reuse)."""
    rise = None
    for w, f in terms:
        rows = gather_tokens(f[stream], idx)                                    # (B, k, D)
        term = rows * (w.to(rows.device, rows.dtype) if isinstance(w, torch.Tensor) else w)
        rise = term if rise is None else rise.add_(term)
    return rise


def edit_anchor(anchor: torch.Tensor, idx: torch.Tensor, value: torch.Tensor, propagate: tuple | None = None,
                valid: torch.Tensor | None = None, reduce=None) -> torch.Tensor:
    """A new (B, N, D) anchor: ``anchor`` with rows idx (B, k) set to ``value`` (B, k, D), and with
    ``propagate`` = (labels (B, N) in [0, K), K, gamma), ClusCa's, every row moved towards the mean new value
    of its cluster by gamma (rows of a cluster with no chosen row stay; the chosen rows themselves move
    towards their own cluster's mean, a no-op when alone in it). ``anchor`` is never edited in place.

    Full-size work: one pass to copy without propagation; with it two, the means gathered to every row and
    mixed into the anchor (``torch.lerp``).

    Under context parallelism (a token choice made over the whole sequence): ``valid`` (B, k) marks the rows
    this rank holds of the choice (the rest pad it: their value is the anchor's, and they do not count in
    the means), and ``reduce`` sums the (B, K, D + 1) cluster sums and counts over the ranks, so a cluster's
    mean is the whole sequence's."""
    b, n, d = anchor.shape
    value = value.to(anchor.dtype)
    if valid is not None:
        value = torch.where(valid.unsqueeze(-1), value, gather_tokens(anchor, idx))
    gamma = 0.0 if propagate is None else propagate[2]
    if gamma == 0:
        return scatter_tokens(anchor, idx, value)
    labels, k, _ = propagate
    fresh_labels = labels.gather(1, idx)                                        # (B, k)
    weight = torch.ones_like(fresh_labels, dtype=anchor.dtype) if valid is None else valid.to(anchor.dtype)
    weighted = value if valid is None else value * weight.unsqueeze(-1)
    sums = torch.zeros(b * k, d, dtype=anchor.dtype, device=anchor.device).index_add_(
        0, _flat_rows(fresh_labels, k), weighted.reshape(-1, d)).view(b, k, d)  # (B, K, D)
    counts = torch.zeros(b, k, dtype=anchor.dtype, device=anchor.device).scatter_add_(
        1, fresh_labels, weight)                                                # (B, K)
    if reduce is not None:  # the whole sequence's chosen rows: one collective of (B, K, D + 1)
        both = reduce(torch.cat([sums, counts.unsqueeze(-1)], -1))
        sums, counts = both[..., :d], both[..., d]
    mean = sums / counts.clamp_min(1).unsqueeze(-1)                             # (B, K, D)
    step = (counts > 0).to(anchor.dtype) * gamma                                # (B, K): 0 where no chosen row
    # the means gathered to every row, then mixed in (a one-hot matrix product of inner dimension K was
    # faster, 0.35-0.47 against 0.8-0.9 ms at 32 x 256 x 128 and 2 threads, but its multiply-adds by zero
    # lowered FLOP x by 2.4% on dit256 and so raised the share of it kept in wall-clock: not taken)
    keep = 1.0 - (gamma if bool((counts > 0).all()) else step.gather(1, labels).unsqueeze(-1))  # or (B, N, 1)
    edited = gather_tokens(mean, labels).lerp_(anchor, keep)                    # (B, N, D): into the gathered means
    moved = torch.lerp(value, gather_tokens(mean, fresh_labels), step.gather(1, fresh_labels).unsqueeze(-1))
    edited.view(b * n, d).index_copy_(0, _flat_rows(idx, n), moved.reshape(-1, d))
    return edited


def refresh(anchor: torch.Tensor, base: torch.Tensor, idx: torch.Tensor, fresh: torch.Tensor,
            propagate: tuple | None = None, keep_anchor: bool = True, valid: torch.Tensor | None = None,
            reduce=None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Put fresh rows into a forecast that is already built; returns (edited anchor or None, output), each
    (B, N, D). The engine takes this path only for a forecaster that does not give its terms (FoCa); with
    terms it reads their rise at the fresh rows (``rise_at``), edits the anchor first (``edit_anchor``) and
    forecasts from it.

    anchor (B, N, D): the order-0 values the forecast ``base`` (B, N, D) is built on (``base is anchor``
    for plain reuse); idx (B, k) rows computed afresh, fresh (B, k, D) their outputs. A fresh row's
    anchor becomes its output minus what the forecast adds there (rise = base - anchor), so the output
    holds ``fresh`` at those rows; ``propagate``, ``valid`` and ``reduce`` as in ``edit_anchor``, whose
    moves shift the output by as much as the anchor: output = base + (edited - anchor).
    ``keep_anchor=False`` (the caller will not keep the edit) skips building the edited anchor when nothing
    propagates."""
    reuse = base is anchor
    fresh = fresh.to(anchor.dtype)
    if valid is not None:  # padding rows: their forecast, so they change as the rows not chosen do
        fresh = torch.where(valid.unsqueeze(-1), fresh, gather_tokens(base, idx))
    value = fresh if reuse else fresh - (gather_tokens(base, idx) - gather_tokens(anchor, idx))  # (B, k, D)
    if propagate is None or propagate[2] == 0:
        edited = scatter_tokens(anchor, idx, value) if keep_anchor or reuse else None
        out = edited if reuse else scatter_tokens(base, idx, fresh)
        return edited, out
    edited = edit_anchor(anchor, idx, value, propagate, valid, reduce)
    return edited, (edited if reuse else torch.add(base, edited).sub_(anchor))
