"""Multimodal rotary embedding (M-RoPE, Qwen2-VL/Qwen3-VL) in FlagGems 5.3 outside aten
(kernels/fused/_common.py). Each token has three positions (time, height, width); the rotary frequency
pairs are split into sections, each rotated by the angle of its own axis's position."""

from __future__ import annotations

import torch
from portability.kernels.fused._common import fused_spec, gems

from portability.spec import Case, T

HEAD, ROTARY, MAX_POS = 32, 32, 64
SECTIONS = (8, 4, 4)  # frequency pairs per axis (t, h, w): sum = ROTARY / 2


def mrope(q: torch.Tensor, k: torch.Tensor, cos_sin: torch.Tensor, positions: torch.Tensor):
    """NeoX-style rotation of (tokens, heads * HEAD) q and k; pair i takes cos/sin from the row of the
    position on axis 0 for i < t, axis 1 for i < t + h, else axis 2. Returns the rotated copies."""
    half = ROTARY // 2
    axis = torch.repeat_interleave(torch.arange(3, device=q.device), torch.tensor(SECTIONS, device=q.device))
    pos = positions.long()[axis, :].T  # (tokens, half): the position each pair uses
    cos = cos_sin[pos, torch.arange(half, device=q.device)]
    sin = cos_sin[pos, half + torch.arange(half, device=q.device)]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (-1, HEAD))
        x0, x1 = x[..., :half], x[..., half:ROTARY]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.cat([x0 * c - x1 * s, x1 * c + x0 * s, x[..., ROTARY:]], -1).flatten(-2)

    return rotate(q), rotate(k)


def mrope_gems(q, k, cos_sin, positions):
    q, k = q.clone(), k.clone()  # the kernel rotates in place
    return gems("mrope")(q, k, cos_sin, positions, *SECTIONS, HEAD, ROTARY)


def _case(name: str, tokens: int) -> Case:
    return Case(
        name,
        T(tokens, 4 * HEAD),
        T(tokens, 2 * HEAD),
        T(MAX_POS, ROTARY),
        T(3, tokens, kind="index", high=MAX_POS),
    )


SPECS = [
    fused_spec(
        "mrope",
        "mrope",
        mrope,
        mrope_gems,
        cases=[_case("decode 1 token, 4 q / 2 kv heads", 1), _case("prefill 9 tokens", 9)],
        tags=("attention", "multimodal"),
    ),
]
