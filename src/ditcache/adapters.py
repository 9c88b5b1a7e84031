"""What ditcache knows about each model family, as data.

``BLOCKS`` maps a block class name to its branches; ``MODELS`` maps a model class name to how its
forward is called (which argument is the timestep, where the token grid comes from). A model is
mapped by finding every submodule whose class is in ``BLOCKS`` (in module order, so Flux's
double-stream blocks come before its single-stream ones). Supporting a new family means adding an
entry here, or calling ``register_block`` / ``register_model`` from user code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .plan import Site

KINDS = ("attn", "cross_attn", "mlp", "block")
PARTIAL_MODES = (None, "tokens", "self_kv")
STREAMS = ("image", "text", "joint")


@dataclass(frozen=True)
class Branch:
    child: str               # attribute of the block holding the branch module; "" = the whole block
    kind: str                # one of KINDS
    partial: str | None = None  # "tokens": the module is token-wise or cross-attention, run it on the subset;
    #                           "self_kv": self-attention, run with queries from the subset, keys/values
    #                           from all tokens (passed as encoder_hidden_states); None: no token subset path
    stream: str = "image"    # which tokens the branch sees: "image", "text", or "joint" (both, e.g. joint attention)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Branch kind must be one of {KINDS}, got {self.kind!r}")
        if self.partial not in PARTIAL_MODES:
            raise ValueError(f"Branch partial mode must be one of {PARTIAL_MODES}, got {self.partial!r}")
        if self.stream not in STREAMS:
            raise ValueError(f"Branch stream must be one of {STREAMS}, got {self.stream!r}")
        if self.kind == "block" and self.child:
            raise ValueError("a 'block' branch is the block itself: leave child empty")


@dataclass(frozen=True)
class BlockSpec:
    branches: tuple[Branch, ...]
    # For whole-block sites: which forward argument each returned stream is the residual of, so the
    # store can cache (output - input) and a reuse step returns input + cached residual.
    outputs: tuple[str, ...] = ()
    image_out: int | None = None  # the block returns a tuple and this element is the image stream
    # Whole-block sites whose gate is known: the child whose output is the pre-gate branch output (cached
    # instead of the residual), and the key of FINISH, which applies the current step's gate and residual
    # to a cached pre-gate output (cheap: a norm and a linear on the timestep embedding).
    pre_gate: str | None = None
    finish: str | None = None
    text_first: bool = True  # joint attention order: [text; image] (Flux, SD3) or [image; text] (HunyuanVideo)


def _finish_hunyuan_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HunyuanVideoSingleTransformerBlock after its proj_out: [image; text] order, image returned first."""
    image, text = inputs["hidden_states"], inputs["encoder_hidden_states"]   # (B, N, D), (B, L, D)
    x = torch.cat([image, text], dim=1)                                      # (B, N + L, D)
    _, gate = block.norm(x, emb=inputs["temb"])
    out = gate.unsqueeze(1) * pre + x
    return out[:, : image.shape[1]], out[:, image.shape[1]:]


def _finish_flux_single(block: nn.Module, inputs: dict, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FluxSingleTransformerBlock after its proj_out: x + gate * pre over [text; image], split back."""
    text, image = inputs["encoder_hidden_states"], inputs["hidden_states"]   # (B, L, D), (B, N, D)
    x = torch.cat([text, image], dim=1)                                      # (B, L + N, D)
    _, gate = block.norm(x, emb=inputs["temb"])                              # (B, D): this step's gate
    out = x + gate.unsqueeze(1) * pre
    if out.dtype == torch.float16:
        out = out.clip(-65504, 65504)
    return out[:, : text.shape[1]], out[:, text.shape[1]:]


FINISH = {"flux_single": _finish_flux_single, "hunyuan_single": _finish_hunyuan_single}


@dataclass(frozen=True)
class ModelSpec:
    timestep_arg: str = "timestep"  # name of the forward argument holding the timestep
    grid: str | None = None          # key of GRIDS: how to read (frames, H, W) of the image tokens
    final: str | None = "norm_out"   # the child whose first input is the blocks' output on the image tokens
    #                                  (FreqCa caches and replaces it); all five diffusers families: norm_out
    temporal: str | None = None      # module-path prefix of blocks whose rows are token positions and whose
    #                                  tokens are frames (Latte's temporal_transformer_blocks): their sites get
    #                                  role "temporal", every other site "spatial"


def _grid_patch2d(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, C, H, W)
    p = model.config.patch_size
    return (1, x.shape[-2] // p, x.shape[-1] // p)


def _grid_flux_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    ids = inputs["img_ids"]  # (N, 3) = (frame/index, row, col)
    ids = ids[0] if ids.ndim == 3 else ids
    return (1, int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)


def _grid_patch3d(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, C, F, H, W)
    p = model.config.patch_size
    pf, ph, pw = p if isinstance(p, (tuple, list)) else (getattr(model.config, "patch_size_t", 1) or 1, p, p)
    return (x.shape[2] // pf, x.shape[3] // ph, x.shape[4] // pw)


def _grid_patch3d_frames_first(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, F, C, H, W): CogVideoX puts frames before channels
    p, pf = model.config.patch_size, getattr(model.config, "patch_size_t", None) or 1
    return (-(-x.shape[1] // pf), x.shape[3] // p, x.shape[4] // p)  # frames rounded up, as it pads them


GRIDS = {"patch2d": _grid_patch2d, "flux_ids": _grid_flux_ids, "patch3d": _grid_patch3d,
         "patch3d_frames_first": _grid_patch3d_frames_first}

BLOCKS: dict[str, BlockSpec] = {
    # DiT (attn1, ff) and PixArt (attn1, attn2, ff); attn2 is None in DiT and is then left out.
    "BasicTransformerBlock": BlockSpec((
        Branch("attn1", "attn", "self_kv"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ff", "mlp", "tokens"),
    )),
    # Flux double stream: joint attention returns (image, text) outputs; separate image / text MLPs.
    "FluxTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # Flux single stream: attention and MLP are fused into one projection: cache the whole block, as its
    # pre-gate proj_out output, so a cached step applies its own gate.
    "FluxSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("encoder_hidden_states", "hidden_states"), image_out=1,
        pre_gate="proj_out", finish="flux_single",
    ),
    # SD3 / SD3.5: joint attention, optional second attention (SD3.5 dual), image and text MLPs
    # (ff_context is None in the last, context_pre_only block).
    "JointTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("attn2", "attn"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=1),
    # HunyuanVideo double stream: joint attention over [image; text] (rotary on the image part), image and
    # text MLPs; returns (image, text). The token refiner ahead of the blocks is left uncached.
    "HunyuanVideoTransformerBlock": BlockSpec((
        Branch("attn", "attn", stream="joint"),
        Branch("ff", "mlp", "tokens"),
        Branch("ff_context", "mlp", "tokens", stream="text"),
    ), image_out=0, text_first=False),
    # HunyuanVideo single stream: Flux's fused block with image first; cached as its pre-gate output.
    "HunyuanVideoSingleTransformerBlock": BlockSpec(
        (Branch("", "block", stream="joint"),), outputs=("hidden_states", "encoder_hidden_states"), image_out=0,
        pre_gate="proj_out", finish="hunyuan_single",
    ),
    # Wan: self-attention with rotary embeddings, cross-attention, MLP. Self-attention has no token-subset
    # path here (nor joint attention in Flux, SD3 and HunyuanVideo): every seed method's preset reuses
    # self-attention whole between full steps (ToCa's f_module for attention is 0 on DiT, PixArt and
    # OpenSora; ClusCa and TokenCache refresh MLPs), so a rotary subset path (queries from the subset with
    # their rotary rows, keys from every token) would serve none of them.
    "WanTransformerBlock": BlockSpec((
        Branch("attn1", "attn"),
        Branch("attn2", "cross_attn", "tokens"),
        Branch("ffn", "mlp", "tokens"),
    )),
    # CogVideoX: joint attention over [text; image] returning (image, text), then one MLP over the joined
    # [text; image] sequence; returns (image, text). The MLP sees both streams at once, so it has no
    # image-only token path here: FORA, TaylorSeer and the frontier methods run, token methods refuse.
    "CogVideoXBlock": BlockSpec((
        Branch("attn1", "attn", stream="joint"),
        Branch("ff", "mlp", stream="joint"),
    ), image_out=0),
}

MODELS: dict[str, ModelSpec] = {
    "DiTTransformer2DModel": ModelSpec(grid="patch2d"),
    "PixArtTransformer2DModel": ModelSpec(grid="patch2d"),
    "FluxTransformer2DModel": ModelSpec(grid="flux_ids"),
    "SD3Transformer2DModel": ModelSpec(grid="patch2d"),
    "WanTransformer3DModel": ModelSpec(grid="patch3d"),
    "HunyuanVideoTransformer3DModel": ModelSpec(grid="patch3d"),
    # CogVideoX: norm_final takes the image tokens after the last block (norm_out follows it).
    "CogVideoXTransformer3DModel": ModelSpec(grid="patch3d_frames_first", final="norm_final"),
    # Latte: BasicTransformerBlocks, spatial ones on (B*F, S, D) and temporal ones on (B*S, F, D).
    "LatteTransformer3DModel": ModelSpec(grid="patch3d", temporal="temporal_transformer_blocks"),
}


def register_block(cls: type | str, *branches: Branch, outputs: tuple[str, ...] = (),
                   image_out: int | None = None, pre_gate: str | None = None, finish: str | None = None) -> None:
    """Teach ditcache a block class:
    ``register_block(MyBlock, Branch("attn", "attn"), Branch("mlp", "mlp", "tokens"))``."""
    name = cls if isinstance(cls, str) else cls.__name__
    if not branches:
        raise ValueError("register_block needs at least one Branch")
    if (pre_gate is None) != (finish is None):
        raise ValueError("register_block: pre_gate and finish go together (or neither)")
    if finish is not None and finish not in FINISH:
        raise KeyError(f"unknown finish rule {finish!r}; known: {sorted(FINISH)}")
    BLOCKS[name] = BlockSpec(tuple(branches), outputs, image_out, pre_gate, finish)


def register_model(cls: type | str, spec: ModelSpec) -> None:
    """Teach ditcache how a model class is called (only needed if its timestep argument is not 'timestep')."""
    MODELS[cls if isinstance(cls, str) else cls.__name__] = spec


def model_spec(model: nn.Module) -> ModelSpec:
    return MODELS.get(type(model).__name__, ModelSpec())


def find_sites(model: nn.Module) -> list[Site]:
    """Every branch of every known block, in model order. Raises if the model has no known block."""
    sites: list[Site] = []
    layer = 0
    temporal = model_spec(model).temporal
    for name, block in model.named_modules():
        spec = BLOCKS.get(type(block).__name__)
        if spec is None:
            continue
        for branch in spec.branches:
            module = getattr(block, branch.child, None) if branch.child else block
            if module is None:
                continue
            if not isinstance(module, nn.Module):
                raise TypeError(f"{type(block).__name__}.{branch.child} is not a module")
            full = f"{name}.{branch.child}" if branch.child else name
            role = "temporal" if temporal and name.startswith(temporal) else "spatial"
            sites.append(Site(full, branch.kind, layer, module, branch.partial, branch.stream, len(sites), block,
                              role))
        layer += 1
    if not sites:
        raise TypeError(
            f"ditcache cannot map {type(model).__name__}: none of its submodules is a known block. "
            f"Supported models: {sorted(MODELS)}; known blocks: {sorted(BLOCKS)}. "
            "Register your block with ditcache.register_block(...)."
        )
    return sites


def block_spec(block: nn.Module) -> BlockSpec:
    return BLOCKS[type(block).__name__]


def token_grid(model: nn.Module, inputs: dict) -> tuple[int, int, int] | None:
    rule = model_spec(model).grid
    if rule is None:
        return None
    try:
        return GRIDS[rule](model, inputs)
    except (KeyError, AttributeError, TypeError, IndexError):
        return None


def timestep_value(t) -> float:
    """The first element of a timestep argument (tensor, number), as a Python float."""
    if isinstance(t, torch.Tensor):
        return float(t.reshape(-1)[0])
    return float(t)
