"""Grid rules shared by several families: how to read (frames, H, W) of the image tokens from a call's
inputs. A family file may add its own rules to its ``GRIDS``."""

from __future__ import annotations

from torch import nn


def patch2d(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, C, H, W)
    p = model.config.patch_size
    return (1, x.shape[-2] // p, x.shape[-1] // p)


def flux_ids(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    ids = inputs["img_ids"]  # (N, 3) = (frame/index, row, col)
    ids = ids[0] if ids.ndim == 3 else ids
    return (1, int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)


def patch3d(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, C, F, H, W)
    p = model.config.patch_size
    pf, ph, pw = p if isinstance(p, (tuple, list)) else (getattr(model.config, "patch_size_t", 1) or 1, p, p)
    return (x.shape[2] // pf, x.shape[3] // ph, x.shape[4] // pw)


def patch3d_frames_first(model: nn.Module, inputs: dict) -> tuple[int, int, int]:
    x = inputs["hidden_states"]  # (B, F, C, H, W): CogVideoX puts frames before channels
    p, pf = model.config.patch_size, getattr(model.config, "patch_size_t", None) or 1
    return (-(-x.shape[1] // pf), x.shape[3] // p, x.shape[4] // p)  # frames rounded up, as it pads them


GRIDS = {"patch2d": patch2d, "flux_ids": flux_ids, "patch3d": patch3d, "patch3d_frames_first": patch3d_frames_first}
