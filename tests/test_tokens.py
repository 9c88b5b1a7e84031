"""Token tools with hand-built inputs and exact answers."""

import math

import pytest
import torch

from ditcache import tokens as T


def test_attention_received_ranks_the_key_everyone_attends_to():
    b, n, h, d = 2, 6, 2, 4
    q = torch.ones(b, n, h, d)
    k = torch.zeros(b, n, h, d)
    k[:, 3] = 5.0                               # every query matches key 3 strongly
    s = T.attention_received(q, k)
    assert s.shape == (b, n)
    assert (s.argmax(-1) == 3).all()
    torch.testing.assert_close(s.sum(-1), torch.full((b,), float(n)))  # each query spreads 1 unit


def test_attention_received_uniform_map():
    q = torch.zeros(1, 4, 1, 2)                 # all logits 0: uniform attention
    s = T.attention_received(q, torch.randn(1, 4, 1, 2))
    torch.testing.assert_close(s, torch.ones(1, 4))


def test_attention_maps_per_head_equal_the_direct_formula_with_padded_keys():
    g = torch.Generator().manual_seed(0)
    b, sq, sk, h, d = 2, 5, 7, 3, 4
    q, k = torch.randn(b, sq, h, d, generator=g), torch.randn(b, sk, h, d, generator=g)
    keep = torch.ones(b, sk, dtype=torch.bool)
    keep[1, -2:] = False                                       # sample 1's last two keys are padding
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / 2.0       # 1 / sqrt(d), d = 4
    probs = torch.softmax(logits.masked_fill(~keep[:, None, None], float("-inf")), -1)  # (B, H, Sq, Sk)
    torch.testing.assert_close(T.attention_received(q, k, keep), probs.sum((1, 2)) / h)
    mean = probs.mean(1)                                       # (B, Sq, Sk): the head-mean map
    torch.testing.assert_close(T.attention_entropy(q, k, keep), -(mean * torch.log(mean + 1e-7)).sum(-1))


def test_attention_entropy_uniform_vs_peaked():
    k = torch.eye(4).reshape(1, 4, 1, 4) * 50   # 4 text keys, orthogonal
    q = torch.zeros(1, 2, 1, 4)
    q[0, 1, 0, 2] = 1.0                          # query 1 points at key 2; query 0 is uniform
    e = T.attention_entropy(q, k)
    assert e.shape == (1, 2)
    assert e[0, 0] == pytest.approx(math.log(4), abs=1e-5)
    assert e[0, 1] < 1e-3


def test_spatial_bonus_boosts_one_token_per_cell():
    score = torch.arange(16.0).reshape(1, 16) + 1    # 4x4 grid, increasing
    out = T.spatial_bonus(score, (1, 4, 4), cell=2, beta=0.5)
    boosted = (out != score).nonzero()[:, 1].tolist()
    assert boosted == [5, 7, 13, 15]                 # the max of each 2x2 cell
    torch.testing.assert_close(out[0, 5], score[0, 5] * 1.5)


def test_spatial_bonus_partial_cells_get_none():
    score = torch.ones(1, 15)
    out = T.spatial_bonus(score, (1, 3, 5), cell=2, beta=1.0)  # last row and column: no whole cell
    assert (out > 1).sum() == 2


def test_top_k_tied_halves_choose_identical_tokens():
    s = torch.randn(4, 10)
    idx = T.top_k(s, 3, tie_halves=True)
    assert torch.equal(idx[:2], idx[2:])
    assert set(idx[0].tolist()) == set((s[0] + s[2]).topk(3).indices.tolist())
    assert torch.equal(T.top_k(s, 3), s.topk(3).indices)


def test_kmeans_finds_separable_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(20)
    x = (centres[truth] + 0.3 * torch.randn(60, 2, generator=g)).unsqueeze(0).repeat(2, 1, 1)
    labels, centroids, iters = T.kmeans(x, 3, generator=g)
    assert labels.shape == (2, 60) and centroids.shape == (2, 3, 2)
    for b in range(2):
        groups = {tuple(sorted(set(labels[b, truth == c].tolist()))) for c in range(3)}
        assert groups == {(labels[b, 0].item(),), (labels[b, 20].item(),), (labels[b, 40].item(),)}
        assert len({labels[b, 0].item(), labels[b, 20].item(), labels[b, 40].item()}) == 3
    # warm start from the answer converges at once
    again, _, iters2 = T.kmeans(x, 3, init=centroids)
    assert torch.equal(again, labels) and iters2 == 1


def test_kmeans_stops_each_sample_on_its_own():
    """Four 1-D points per sample in two pairs, {0, 1} and {10, 11}. Sample 0 starts at its answer
    (0.5, 10.5): one iteration, nothing moves. Sample 1 starts at (0, 1): iteration 1 assigns 0 | 1, 10, 11
    and moves the centroids to (0, 22/3); iteration 2 assigns 0, 1 | 10, 11 -> (0.5, 10.5); iteration 3
    moves nothing. Sample 0's answer is untouched by sample 1's later iterations; three iterations in all."""
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]]).expand(2, 4, 1).contiguous()
    init = torch.tensor([[[0.5], [10.5]], [[0.0], [1.0]]])
    labels, centroids, iters = T.kmeans(x, 2, init=init, distance="l2")
    assert labels.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]] and iters == 3
    assert torch.equal(centroids, torch.tensor([[[0.5], [10.5]], [[0.5], [10.5]]]))
    _, _, alone = T.kmeans(x[:1], 2, init=init[:1], distance="l2")
    assert alone == 1


def test_kmeans_rejects_bad_k():
    with pytest.raises(ValueError, match="K <= number of tokens"):
        T.kmeans(torch.randn(1, 4, 2), 5)
    with pytest.raises(ValueError):
        T.kmeans(torch.randn(1, 4, 2), 0)


def test_one_per_cluster_picks_members_and_fills_empty_clusters():
    labels = torch.tensor([[0, 0, 1, 1, 1, 0], [2, 2, 2, 2, 2, 2]])
    idx = T.one_per_cluster(labels, 3, torch.Generator().manual_seed(1))
    assert idx.shape == (2, 3)
    assert labels[0, idx[0, 0]] == 0 and labels[0, idx[0, 1]] == 1   # cluster 2 is empty in sample 0
    assert labels[1, idx[1, 2]] == 2
    # empty clusters lend their slots to tokens no other cluster chose: 3 distinct tokens per sample
    assert all(len(set(row.tolist())) == 3 for row in idx)


def test_kmeans_l2_through_matrix_products_matches_l1_on_separable_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(20)
    x = (centres[truth] + 0.3 * torch.randn(60, 2, generator=g)).unsqueeze(0)
    l1, _, _ = T.kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    l2, _, _ = T.kmeans(x, 3, generator=torch.Generator().manual_seed(1), distance="l2")
    assert torch.equal(l1, l2)
    # the matrix-product form equals the squared Euclidean distance
    c = torch.randn(1, 3, 2, generator=g)
    torch.testing.assert_close(T.distances(x, c, "l2"), torch.cdist(x, c) ** 2, rtol=1e-4, atol=1e-3)


def test_refresh_propagates_towards_fresh_cluster_mean_and_keeps_fresh_rows():
    anchor = torch.zeros(1, 4, 2)
    fresh = torch.tensor([[[2.0, 4.0]]])         # row 1, of cluster 0
    labels = torch.tensor([[0, 0, 1, 1]])        # cluster 1 has no fresh row: its rows stay
    idx = torch.tensor([[1]])
    edited, out = T.refresh(anchor, anchor, idx, fresh, (labels, 2, 0.25))
    assert out is edited
    torch.testing.assert_close(edited[0], torch.tensor([[0.5, 1.0], [2.0, 4.0], [0.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(anchor, torch.zeros(1, 4, 2))            # the stored anchor is never edited in place
    edited, _ = T.refresh(anchor, anchor, idx, fresh, (labels, 2, 1.0))
    torch.testing.assert_close(edited[0, 0], torch.tensor([2.0, 4.0]))
    edited, out = T.refresh(anchor, anchor, idx, fresh, (labels, 2, 0.0))
    assert torch.equal(edited[0], torch.tensor([[0.0, 0.0], [2.0, 4.0], [0.0, 0.0], [0.0, 0.0]]))


def test_refresh_under_a_forecast_by_hand():
    """anchor a, forecast base = a + rise. The fresh row's anchor becomes fresh - rise there (6 - 1 = 5),
    each row of its cluster moves towards 5 by gamma 0.5 (a 1 -> 3, the row of the other cluster, with
    its own fresh row 2: 10 - 2 = 8, moves 3 -> 5.5); outputs are edited anchor + rise, fresh rows exact."""
    a = torch.tensor([[[1.0], [9.0], [3.0], [7.0]]])             # (1, 4, 1)
    rise = torch.tensor([[[0.5], [1.0], [-1.0], [2.0]]])
    labels = torch.tensor([[0, 0, 1, 1]])
    idx = torch.tensor([[1, 3]])
    fresh = torch.tensor([[[6.0], [10.0]]])
    edited, out = T.refresh(a, a + rise, idx, fresh, (labels, 2, 0.5))
    want = torch.tensor([3.0, 5.0, 5.5, 8.0])
    torch.testing.assert_close(edited.flatten(), want)
    torch.testing.assert_close(out.flatten(), want + rise.flatten())
    assert out[0, 1, 0] == 6.0 and out[0, 3, 0] == 10.0
    # two fresh rows in one cluster: both move towards their mean (7), the cluster's other row too
    edited, out = T.refresh(a, a + rise, torch.tensor([[0, 1]]), torch.tensor([[[1.5], [12.0]]]), (labels, 2, 0.5))
    torch.testing.assert_close(edited.flatten(), torch.tensor([(1.0 + 6.0) / 2, (11.0 + 6.0) / 2, 3.0, 7.0]))
    # without propagation, and without keeping the edit: only the output
    edited, out = T.refresh(a, a + rise, idx, fresh, None, keep_anchor=False)
    assert edited is None
    torch.testing.assert_close(out.flatten(), torch.tensor([1.5, 6.0, 2.0, 10.0]))


def test_edit_anchor_by_hand():
    """The anchor of test_refresh_under_a_forecast_by_hand edited directly from the fresh rows' new values
    (fresh - rise: 6 - 1 = 5 at row 1, 10 - 2 = 8 at row 3): the same edited anchor, [3, 5, 5.5, 8]."""
    a = torch.tensor([[[1.0], [9.0], [3.0], [7.0]]])             # (1, 4, 1)
    labels = torch.tensor([[0, 0, 1, 1]])
    idx = torch.tensor([[1, 3]])
    value = torch.tensor([[[5.0], [8.0]]])
    edited = T.edit_anchor(a, idx, value, (labels, 2, 0.5))
    torch.testing.assert_close(edited.flatten(), torch.tensor([3.0, 5.0, 5.5, 8.0]))
    assert torch.equal(a.flatten(), torch.tensor([1.0, 9.0, 3.0, 7.0]))  # never edited in place
    # a cluster with no chosen row keeps its rows: only row 0 moves (1 -> 3), rows 2 and 3 stay
    edited = T.edit_anchor(a, torch.tensor([[1]]), torch.tensor([[[5.0]]]), (labels, 2, 0.5))
    torch.testing.assert_close(edited.flatten(), torch.tensor([3.0, 5.0, 3.0, 7.0]))
    # without propagation: the rows replaced, nothing else
    edited = T.edit_anchor(a, idx, value)
    assert torch.equal(edited.flatten(), torch.tensor([1.0, 5.0, 3.0, 8.0]))
    # a padding row (valid False: another rank holds it) keeps its anchor value 7 and does not count in
    # cluster 1's mean, which then has no chosen row: rows 2 and 3 stay
    edited = T.edit_anchor(a, idx, value, (labels, 2, 0.5), valid=torch.tensor([[True, False]]))
    torch.testing.assert_close(edited.flatten(), torch.tensor([3.0, 5.0, 3.0, 7.0]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_edit_anchor_in_half_precision_matches_float32(dtype):
    """The edit in half precision keeps the dtype and matches float32's, with and without a cluster that has
    no chosen row."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 12, 8, generator=g)
    labels = (torch.arange(12) % 3).expand(2, -1)
    idx = torch.tensor([[0, 5, 7], [1, 2, 3]])                  # one row of each cluster; then only the first
    value = torch.randn(2, 3, 8, generator=g)
    for every in (True, False):
        i = idx if every else idx[:, :1]
        v = value if every else value[:, :1]
        want = T.edit_anchor(a, i, v, (labels, 3, 0.25))
        got = T.edit_anchor(a.to(dtype), i, v.to(dtype), (labels, 3, 0.25))
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


def test_rise_at_rows_by_hand():
    """Terms [(w, F)] read at rows: 2 F1 + 0.5 F2, and a (D,) weight per channel."""
    f1 = torch.arange(8.0).view(1, 4, 2)                         # rows [0,1], [2,3], [4,5], [6,7]
    f2 = torch.ones(1, 4, 2)
    idx = torch.tensor([[2, 0]])
    rise = T.rise_at([(2.0, (f1,)), (0.5, (f2,))], 0, idx)
    assert torch.equal(rise, torch.tensor([[[8.5, 10.5], [0.5, 2.5]]]))
    rise = T.rise_at([(torch.tensor([1.0, -1.0]), (None, f1))], 1, idx)
    assert torch.equal(rise, torch.tensor([[[4.0, -5.0], [0.0, -1.0]]]))
    assert T.rise_at([], 0, idx) is None


def test_gather_tokens_from_a_channels_first_layout():
    """A (B, N, D) view of (B, D, N) memory (DiT's hidden state after the patch embedding) is read in place:
    the same rows as from a contiguous copy."""
    x = torch.arange(2 * 3 * 5.0).view(2, 3, 5).transpose(1, 2)    # (2, 5, 3), not flattenable to (10, 3)
    idx = torch.tensor([[4, 0], [1, 1]])
    want = torch.stack([x[0, [4, 0]], x[1, [1, 1]]])
    assert torch.equal(T.gather_tokens(x, idx), want)
    assert torch.equal(T.gather_tokens(x.contiguous(), idx), want)


def _capture(model, module, name):
    """One forward of a tiny zoo model; the module's call (args, kwargs) and output."""
    from ditcache import zoo

    seen = {}

    def hook(m, args, kwargs, out):
        seen.setdefault("call", (args, kwargs, out))

    h = module.register_forward_hook(hook, with_kwargs=True)
    noise, cond, _ = zoo.conditioning(name, 2)
    scale = 1e-3 if name == "flux-tiny" else 1.0
    with torch.no_grad():
        model(hidden_states=noise, timestep=torch.full((2,), 500.0 * scale), return_dict=False, **cond)
    h.remove()
    return seen["call"]


@pytest.mark.parametrize("name,path,joint,text_first", [
    ("dit-tiny", "transformer_blocks.0.attn1", False, True),
    ("pixart-tiny", "transformer_blocks.0.attn2", False, True),
    ("flux-tiny", "transformer_blocks.0.attn", True, True),
    ("sd3-tiny", "transformer_blocks.0.attn", True, True),
    ("hunyuan-tiny", "transformer_blocks.0.attn", True, False),
])
def test_query_key_are_the_modules_own(name, path, joint, text_first):
    """softmax(q k^T / sqrt(d)) v with ditcache's q and k and the module's own value and output projections
    reproduces the module's output: q and k are the ones diffusers computes (norms, rotary, stream order)."""
    from ditcache import zoo

    model = zoo.build(name)
    module = model.get_submodule(path)
    args, kwargs, out = _capture(model, module, name)
    x = args[0] if args else kwargs["hidden_states"]
    context = kwargs.get("encoder_hidden_states")
    rotary = kwargs.get("image_rotary_emb")
    q, k = T.query_key(module, x, context, rotary=rotary, joint=joint, text_first=text_first)
    heads = lambda t: t.unflatten(-1, (module.heads, -1))  # noqa: E731
    if joint:
        v_img, v_txt = heads(module.to_v(x)), heads(module.add_v_proj(context))
        v = torch.cat([v_txt, v_img] if text_first else [v_img, v_txt], 1)
    else:
        v = heads(module.to_v(x if context is None else context))
    with torch.no_grad():
        probs = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) * q.shape[-1] ** -0.5, -1)
        o = torch.einsum("bhqk,bkhd->bqhd", probs, v).flatten(2)                    # (B, S, H*d)
        if not joint:
            torch.testing.assert_close(module.to_out[0](o), out, rtol=1e-4, atol=1e-5)
            return
        n_txt = context.shape[1]
        img, txt = (o[:, n_txt:], o[:, :n_txt]) if text_first else (o[:, :-n_txt], o[:, -n_txt:])
        torch.testing.assert_close(module.to_out[0](img), out[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(module.to_add_out(txt), out[1], rtol=1e-4, atol=1e-5)


def test_query_key_on_qwen_image_rotates_each_stream_with_its_complex_table():
    """Qwen-Image hands its attention (image freqs, text freqs) as complex tables and rotates each stream on its
    own before joining [text, image]: ditcache's q and k then reproduce the module's output as above."""
    from ditcache.pipelines import tiny_pipeline

    pipe = tiny_pipeline("qwenimage")
    module = pipe.transformer.transformer_blocks[0].attn
    seen = {}

    def hook(m, args, kwargs, out):
        seen.setdefault("call", (args, kwargs, out))

    h = module.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        pipe(prompt="a red shirt", height=16, width=16, num_inference_steps=2, output_type="latent",
             true_cfg_scale=1.0, max_sequence_length=8)
    h.remove()
    args, kwargs, out = seen["call"]
    x, context, rotary = kwargs["hidden_states"], kwargs["encoder_hidden_states"], kwargs["image_rotary_emb"]
    assert all(r.is_complex() for r in rotary)
    q, k = T.query_key(module, x, context, rotary=rotary, joint=True, text_first=True)
    heads = lambda t: t.unflatten(-1, (module.heads, -1))  # noqa: E731
    v = torch.cat([heads(module.add_v_proj(context)), heads(module.to_v(x))], 1)
    with torch.no_grad():
        probs = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) * q.shape[-1] ** -0.5, -1)
        o = torch.einsum("bhqk,bkhd->bqhd", probs, v).flatten(2)
    n_txt = context.shape[1]
    torch.testing.assert_close(module.to_out[0](o[:, n_txt:]), out[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(module.to_add_out(o[:, :n_txt]), out[1], rtol=1e-4, atol=1e-5)
