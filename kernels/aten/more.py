"""More hand-written aten specs (see kernels/aten/extra.py for the style): overloads that no OpInfo sample
reaches, or that must not depend on op_db, each called directly so what it covers is unambiguous.

FlagGems overloads left uncovered on purpose, because a CPU call cannot reach them (coverage is measured
by dispatching on the CPU, and a spec that raises there is broken, not covering):
  _conv_depthwise2d, _flash_attention_forward: torch has CUDA kernels only (conv2d and SDPA on the CPU
      take other paths); max_pool2d_backward: torch has an MPS kernel only (the CPU's max_pool2d
      backward is max_pool2d_with_indices_backward).
  copysign: FlagGems registers the overload `aten::copysign(Scalar a, Scalar b) -> float`, a TorchScript
      scalar op outside the dispatcher: no tensor reaches it (copysign.Tensor is another overload).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from portability.kernels.aten.extra import A, spec

from portability.spec import Case, T


def _grouped_mm(a: torch.Tensor, b: torch.Tensor, offs: Sequence[int]) -> torch.Tensor:
    # offs: cumulative row ends of a's groups; group g multiplies a[offs[g-1]:offs[g]] by b[g]
    return A._grouped_mm(a, b, torch.tensor(offs, dtype=torch.int32, device=a.device))


def _grouped_mm_ref(a: torch.Tensor, b: torch.Tensor, offs: Sequence[int]) -> torch.Tensor:
    # torch's _grouped_mm has no float64 kernel: the reference is one mm per group, in float64
    starts = (0, *offs[:-1])
    return torch.cat([a[s:e] @ b[g] for g, (s, e) in enumerate(zip(starts, offs, strict=True))])


def _group_norm(x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, groups: int):
    return A.native_group_norm.default(x, w, b, x.shape[0], x.shape[1], x[0, 0].numel(), groups, 1e-5)


SPECS = [
    # 2D x 3D grouped GEMM (MoE experts), the form FlagGems' group_mm implements. torch needs every row
    # stride to be a multiple of 16 bytes (K, N multiples of 8 at 16 bits) and has no fp64 kernel.
    spec(
        "_grouped_mm",
        _grouped_mm,
        [
            Case("40x16 by 3 groups of 16x24", T(40, 16), T(3, 16, 24), (8, 24, 40)),
            Case("an empty group", T(24, 32), T(3, 32, 8), (8, 8, 24)),
        ],
        ["group_mm"],
        ref=_grouped_mm_ref,
        flops=lambda c, d, out: 2 * out.numel() * c.args[0].shape[1],
    ),
    # native_group_norm with explicit inputs: the OpInfo-generated aten.native_group_norm needs an op_db
    # entry of that name, which torch 2.11's op_db lacks. Outputs: (normalised x, mean, rstd) per group.
    spec(
        "native_group_norm explicit",
        _group_norm,
        [
            Case("2x6x4x5, 3 groups, affine", T(2, 6, 4, 5), T(6, low=0.5, high=1.5), T(6), 3),
            Case("1x8x7, 4 groups, no affine", T(1, 8, 7), None, None, 4),
        ],
        ["group_norm"],
    ),
]
