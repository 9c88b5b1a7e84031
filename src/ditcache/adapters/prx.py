"""PRX (Photoroom): blocks whose attention takes queries from the image tokens and keys/values from
[caption; image], followed by a gated MLP made of three bare linears."""

from __future__ import annotations

from .spec import BlockSpec, Branch, ModelSpec

BLOCKS = {
    # PRXBlock: the MLP is no module (gate_proj, up_proj and down_proj are called in the block's forward), so
    # it cannot be a branch of its own; attention alone would leave most of the block's FLOPs uncached. The
    # block is cached whole as its residual (output - hidden_states) on the image stream; the caption passes
    # through unchanged. No token path (rotary on the attention's queries; a whole block has none).
    "PRXBlock": BlockSpec((Branch("", "block"),), outputs=("hidden_states",)),
}

MODELS = {
    # final_layer takes the image tokens after the last block.
    "PRXTransformer2DModel": ModelSpec(grid="patch2d", final="final_layer"),
}
