"""Audio DiTs: denoising transformers over 1-D token sequences (latent frames of a waveform or spectrogram).

No token grid (``grid`` None): the tokens are frames in time. ``final`` is None throughout: FreqCa splits the
blocks' output by a DCT over the token grid, which these models do not give, so it is refused up front
rather than after the first full step (the module each comment names takes the frames, should a 1-D grid
rule be added). Several of these models prepend non-audio tokens that ride in the same residual stream
(Stable Audio's global token, Stable Audio 3's memory tokens, MiniMax Music 3's timestep token): token-wise
branches run on any subset of those rows, so their token paths stay valid, and a token method may pick or
skip the prepended rows like any other.
"""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # ACE-Step 1.5: self-attention with RoPE (and a banded mask on sliding-window layers): no token path;
    # cross-attention whose queries are the audio tokens (no RoPE on cross-attention, no mask passed) and
    # keys/values the condition tokens; SwiGLU MLP (token-wise). Cross-attention output is added ungated.
    "AceStepTransformerBlock": BlockSpec((
        Branch("self_attn", "attn"),
        Branch("cross_attn", "cross_attn", "tokens"),
        Branch("mlp", "mlp", "tokens"),
    )),
    # Stable Audio Open: rotary self-attention (no token path), cross-attention to the T5 + duration
    # tokens (no rotary, key mask (B, L) broadcast over queries), SwiGLU FeedForward. Rows are
    # [global token; audio frames]: the global token carries the timestep.
    "StableAudioDiTBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
    # Stable Audio 3: differential self-attention with partial RoPE (no token path), differential
    # cross-attention to the text/duration context (no RoPE, key mask only), SwiGLU MLP. Rows are
    # [memory tokens; audio frames]; the inpaint conditioning (local_seq) is added to the residual between
    # cross-attention and MLP, outside every branch.
    "StableAudio3DiTBlock": BlockSpec((
        Branch("self_attn", "attn"),
        Branch("cross_attn", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
    # LongCat-AudioDiT: rotary self-attention; cross-attention that rotates its queries with the audio
    # positions' RoPE table and multiplies its output by the (B, N) audio mask, both indexed by query row,
    # so a token subset would not line up with them: no token path; GELU MLP (token-wise).
    "AudioDiTBlock": BlockSpec((
        Branch("self_attn", "attn"),
        Branch("cross_attn", "cross_attn"),
        Branch("ffn", "mlp", "tokens"),
    )),
    # MiniMax Music 3: rotary self-attention, then a SwiGLU MLP written inline in the block (ff_in, silu
    # gate, ff_out: no module holds the MLP). Caching ff_out alone would still compute ff_in (2/3 of the
    # MLP) on every reused step, so the block is one site: its residual (output - input) is cached. No
    # adaLN gate (the timestep enters as a prepended token), so no finish rule is needed.
    "MiniMaxMusic3TransformerBlock": BlockSpec((Branch("", "block"),), outputs=("hidden_states",)),
    # Spectrogram Diffusion (T5FilmDecoder): each DecoderLayer holds its three residual branches in
    # sub-layers indexed in an nn.ModuleList (layer[0..2]), so each sub-layer class is its own block here.
    # Self-attention: a plain diffusers Attention, no rotary, no mask: keys/values from every token.
    "T5LayerSelfAttentionCond": BlockSpec((Branch("attention", "attn", "self_kv"),)),
    # Cross-attention to the note/context encodings: its mask is (B, N, L), indexed by query row, so no
    # token path.
    "T5LayerCrossAttention": BlockSpec((Branch("attention", "cross_attn"),)),
    # FiLM-conditioned gated-GELU MLP (token-wise).
    "T5LayerFFCond": BlockSpec((Branch("DenseReluDense", "mlp", "tokens"),)),
}

MODELS = {
    # t in [0, 1]; timestep_r (mean-flow reference time) also enters the embedding but is not the step.
    # norm_out would take the audio frames.
    "AceStepTransformer1DModel": ModelSpec(final=None),
    # proj_out takes [global token; frames] (the global row is dropped after it), so there is no
    # frames-only final module at all.
    "StableAudioDiTModel": ModelSpec(final=None),
    # proj_out would take the frames (memory tokens removed before it).
    "StableAudio3DiTModel": ModelSpec(final=None),
    # norm_out would take the frames plus the long-skip residual.
    "LongCatAudioDiTTransformer": ModelSpec(final=None),
    # proj_out would take the frames (the timestep token removed before it).
    "MiniMaxMusic3Transformer1DModel": ModelSpec(final=None),
    # Noise time in [0, 1) as decoder_noise_time; decoder_norm would take the frames.
    "T5FilmDecoder": ModelSpec(timestep_arg="decoder_noise_time", final=None),
}

UNMAPPED = {
    "MiniMaxMusic3RVQDepthDecoder": "an autoregressive RVQ codebook decoder (causal attention over one frame's "
                                    "codes, no timestep): not a diffusion denoiser",
}
