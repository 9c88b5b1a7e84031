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


def picture_grid(rows: list[tuple[str, torch.Tensor]], captions: list[str], min_size: int = 96) -> Image.Image:
    """RGB pictures of a pipeline: one row per (title, images (B, C, H, W) in [0, 1], C = 1 or 3), captions
    above the columns; small images are enlarged (nearest) to ``min_size`` pixels high."""
    font = ImageFont.load_default()
    n = max(r[1].shape[0] for r in rows)
    h, w = rows[0][1].shape[-2:]
    scale = max(1, -(-min_size // h))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 12 + max(int(measure.textlength(title, font=font)) for title, _ in rows)
    cap_w = max((int(measure.textlength(c, font=font)) for c in captions[:n]), default=0)
    cell_w, cell_h, top = max(w * scale, cap_w) + 6, h * scale + 6, 16
    canvas = Image.new("RGB", (left + n * cell_w, top + len(rows) * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, cap in enumerate(captions[:n]):
        draw.text((left + j * cell_w + 2, 2), cap, fill=(0, 0, 0), font=font)
    for i, (title, images) in enumerate(rows):
        y = top + i * cell_h
        draw.text((4, y + cell_h // 2 - 6), title, fill=(0, 0, 0), font=font)
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)          # (B, C, H, W)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        for j, img in enumerate(pixels[:, :3].permute(0, 2, 3, 1).contiguous()):   # (H, W, 3)
            tile = Image.fromarray(img.numpy(), "RGB").resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (left + j * cell_w + 3, y + 3))
    return canvas


def picture_animation(rows: list[tuple[str, torch.Tensor]], captions: list[str]) -> list[Image.Image]:
    """``picture_grid`` per frame of clips (B, F, C, H, W) in [0, 1]; save with ``save_gif``."""
    frames = rows[0][1].shape[1]
    return [picture_grid([(title, clips[:, f]) for title, clips in rows], captions) for f in range(frames)]
