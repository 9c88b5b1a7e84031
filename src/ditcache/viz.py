"""Pictures: labelled image grids (PIL only)."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [-1, 1] -> (B, H, W) uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]


def labelled_grid(rows: list[tuple[str, torch.Tensor]], captions: list[str], scale: int = 3) -> Image.Image:
    """One row per (title, images (B, 1, H, W)); ``captions`` label the columns."""
    font = ImageFont.load_default()
    n = max(r[1].shape[0] for r in rows)
    h, w = rows[0][1].shape[-2:]
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    # the left margin fits the longest row title; columns are widened to fit their captions
    left = 12 + max(int(measure.textlength(title, font=font)) for title, _ in rows)
    cap_w = max((int(measure.textlength(c, font=font)) for c in captions[:n]), default=0)
    cell_w, cell_h, top = max(w * scale, cap_w) + 4, h * scale + 4, 16
    canvas = Image.new("L", (left + n * cell_w, top + len(rows) * cell_h), 255)
    draw = ImageDraw.Draw(canvas)
    for j, cap in enumerate(captions[:n]):
        draw.text((left + j * cell_w + 2, 2), cap, fill=0, font=font)
    for i, (title, images) in enumerate(rows):
        y = top + i * cell_h
        draw.text((4, y + cell_h // 2 - 6), title, fill=0, font=font)
        for j, img in enumerate(to_uint8(images)):
            tile = Image.fromarray(img.numpy(), "L").resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (left + j * cell_w + 2, y + 2))
    return canvas


def labelled_animation(rows: list[tuple[str, torch.Tensor]], captions: list[str], scale: int = 3) -> list[Image.Image]:
    """One labelled grid per frame: rows of (title, clips (B, F, 1, H, W)), the clips' frames side by side;
    save the list as an animated GIF (``save_gif``)."""
    frames = rows[0][1].shape[1]
    return [labelled_grid([(title, clips[:, f]) for title, clips in rows], captions, scale) for f in range(frames)]


def save_gif(images: list[Image.Image], path, ms_per_frame: int = 150) -> None:
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
