"""Hand-written specs for aten-internal overloads that no OpInfo sample reaches, or that must not depend
on op_db (fused optimisers, AMP unscaling, batch-norm variants, segment reductions, nested/jagged
layouts, fp8 scaled matmul, metadata ops...), each called directly so what it covers is unambiguous.

FlagGems overloads no CPU call can reach are listed in CPU_UNREACHABLE with the reason: coverage is
measured by dispatching on the CPU, and a spec that raises there is broken, not covering. They still
deserve specs on a GPU box; what they need there is a CUDA-only case set, not written yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from portability.kernels.aten._hand import INTS, XY, A, X, installed_only, spec

from portability.spec import Case, T

_CUDA_ONLY = "torch has no CPU kernel for it (CUDA only)"
_ATTENTION = "a CUDA-only attention kernel (SDPA on the CPU takes another path)"
CPU_UNREACHABLE: dict[str, str] = {
    "_conv_depthwise2d": _CUDA_ONLY + "; conv2d on the CPU takes another path",
    "_flash_attention_forward": _ATTENTION,
    "_flash_attention_backward": _ATTENTION,
    "_efficient_attention_backward": _ATTENTION,
    "_cudnn_attention_forward": _ATTENTION,
    "_scaled_dot_product_flash_attention": _ATTENTION,
    "_scaled_dot_product_flash_attention_backward": _ATTENTION,
    "_scaled_dot_product_efficient_attention_backward": _ATTENTION,
    "_scaled_dot_product_cudnn_attention_backward": _ATTENTION,
    "_scaled_dot_product_fused_attention_overrideable": "implemented by PrivateUse1 backends only",
    "cudnn_convolution": "cuDNN only",
    "cudnn_batch_norm_backward": "cuDNN only",
    "miopen_batch_norm_backward": "MIOpen (ROCm) only",
    "max_pool2d_backward": "torch has an MPS kernel only (the CPU's is max_pool2d_with_indices_backward)",
    "_thnn_fused_lstm_cell": _CUDA_ONLY,
    "_thnn_fused_lstm_cell_backward_impl": _CUDA_ONLY,
    "_sparse_semi_structured_mm": _CUDA_ONLY + " (2:4 sparse tensor cores)",
    "_scaled_grouped_mm": _CUDA_ONLY,
    "_convert_weight_to_int4pack": _CUDA_ONLY + " (the CPU's is _convert_weight_to_int4pack_for_cpu)",
    "_masked_scale": _CUDA_ONLY,
    "_resize_output": "its in-place _resize_output_ has no CPU kernel",
    "addmm.dtype": _CUDA_ONLY,
    "addmm.dtype_out": _CUDA_ONLY,
    "linear_backward": "torch has an MKLDNN kernel only",
    "copysign": "aten::copysign(Scalar, Scalar) -> float is a TorchScript scalar op: no tensor reaches it",
    "remainder": "aten::remainder(Scalar, Scalar) -> Scalar is a TorchScript scalar op: no tensor reaches it",
    "sym_stride": "a tensor's strides are answered from its metadata: the call never reaches a dispatch",
}


def _grouped_mm(a: torch.Tensor, b: torch.Tensor, offs: Sequence[int]) -> torch.Tensor:
    # offs: cumulative row ends of a's groups; group g multiplies a[offs[g-1]:offs[g]] by b[g]
    return A._grouped_mm(a, b, torch.tensor(offs, dtype=torch.int32, device=a.device))


def _grouped_mm_ref(a: torch.Tensor, b: torch.Tensor, offs: Sequence[int]) -> torch.Tensor:
    # torch's _grouped_mm has no float64 kernel: the reference is one mm per group, in float64
    starts = (0, *offs[:-1])
    return torch.cat([a[s:e] @ b[g] for g, (s, e) in enumerate(zip(starts, offs, strict=True))])


def _group_norm(x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, groups: int):
    return A.native_group_norm.default(x, w, b, x.shape[0], x.shape[1], x[0, 0].numel(), groups, 1e-5)


def _amp_unscale(grad: torch.Tensor, other: torch.Tensor, overflow: bool) -> tuple[torch.Tensor, ...]:
    """AMP's unscale step on copies: both gradients times 1/scale, found_inf set if any is not finite
    (`overflow`: the other gradient's first element is made inf)."""
    grads = [grad.clone(), other.clone()]
    if overflow:
        grads[1][0] = float("inf")
    found_inf = torch.zeros(1, dtype=torch.float32, device=grad.device)  # the kernel wants float32 scalars
    A._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, found_inf.new_tensor(0.5))
    return (*grads, found_inf)


# One Adam step at step 3 (the optimiser's bias corrections use it).
ADAM = {
    "lr": 0.1,
    "beta1": 0.9,
    "beta2": 0.99,
    "weight_decay": 0.01,
    "eps": 1e-8,
    "amsgrad": False,
    "maximize": False,
}
ADAM_CASES = [Case("33x17", T(33, 17), T(33, 17), T(33, 17), T(33, 17, low=0.0, high=1.0))]


def _fused_adam_inplace(p, g, m, v) -> tuple[torch.Tensor, ...]:
    """_fused_adam_ writes its lists and returns nothing: run it on copies and return them."""
    p, m, v = p.clone(), m.clone(), v.clone()
    A._fused_adam_([p], [g], [m], [v], [], [p.new_tensor(3.0)], **ADAM)
    return p, m, v


def _embedding_bag_grad(w: torch.Tensor, i: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The weight gradient of a mean embedding bag, called directly: on the CPU autograd reaches it
    inside _embedding_bag_backward's kernel, below where a dispatch can be observed."""
    offsets = torch.tensor([0, 3], device=i.device)
    _, offset2bag, bag_size, max_indices = A._embedding_bag(w, i, offsets, False, 1)
    return A._embedding_bag_dense_backward(
        g, i, offset2bag, bag_size, max_indices, w.shape[0], False, 1, None
    )


# Fractional max pooling with its random sample points given: a deterministic function of them (fixed
# here, so the backward differentiates the input only).
FRACTIONAL = [Case("1x2x8x8 to 4x4", T(1, 2, 8, 8))]


def _fractional(x: torch.Tensor) -> torch.Tensor:
    u = torch.tensor([[[0.3, 0.7], [0.9, 0.1]]], dtype=x.dtype, device=x.device)
    return A.fractional_max_pool2d(x, [2, 2], [4, 4], u)[0]


SEGMENTS = [Case("12 values in segments of 2, 4, 6", T(12))]


def _lengths(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor([2, 4, 6], device=x.device)


def _segment_backward(x: torch.Tensor) -> torch.Tensor:
    out = A.segment_reduce(x, "max", lengths=_lengths(x))
    return A._segment_reduce_backward(out * 0 + 1, out, x, "max", lengths=_lengths(x))


def _segment_backward_out(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    y = A.segment_reduce(x, "max", lengths=_lengths(x))
    return A._segment_reduce_backward.out(y * 0 + 1, y, x, "max", lengths=_lengths(x), out=out)


# fp8 (e4m3) scaled matmul: inputs rounded to fp8 in the call, per-tensor scales of 1.
MM_FP8 = [Case("16x32 @ 32x16", T(16, 32), T(16, 32))]


def _fp8(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    one = torch.ones((), device=a.device)
    return a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn).t(), one, one


def _scaled_mm_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # torch has no float64 _scaled_mm: the same fp8 rounding, then a float64 matmul
    return a.to(torch.float8_e4m3fn).double() @ b.to(torch.float8_e4m3fn).double().t()


def _nested_meta(device: torch.device) -> tuple[torch.Tensor, ...]:
    """Sizes, strides and offsets of two contiguous components 2x3 and 1x4 in one buffer."""
    sizes = torch.tensor([[2, 3], [1, 4]])
    return sizes, torch.tensor([[3, 1], [4, 1]]), torch.tensor([0, 6])


SPECS = installed_only(
    [
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
        # ---- added for the overloads FlagGems 5.3 registers
        spec(
            "_amp_foreach_non_finite_check_and_unscale_",
            _amp_unscale,
            [Case("33x17 and 5 finite", T(33, 17), T(5), False), Case("with an inf", T(33, 17), T(5), True)],
            ["_amp_foreach_non_finite_check_and_unscale_"],
            kind="functional",  # writes its gradient list and found_inf: the wrapper returns copies
            dtypes=("fp32",),
        ),
        spec(
            "_fused_adam",
            lambda p, g, m, v: A._fused_adam([p], [g], [m], [v], [], [p.new_tensor(3.0)], **ADAM)[0][0],
            ADAM_CASES,
            ["_fused_adam"],
            dtypes=("fp32",),
        ),
        spec(
            "_fused_adam_",
            _fused_adam_inplace,
            ADAM_CASES,
            ["_fused_adam_"],
            kind="functional",  # writes its lists in place, returns nothing: the wrapper returns them
            dtypes=("fp32",),
        ),
        spec(
            "_batch_norm_no_update",
            lambda x, m, v, w, b: A._batch_norm_no_update(x, w, b, m, v, 0.1, 1e-5)[0],
            [Case("4x3x5", T(4, 3, 5), T(3), T(3, low=0.5, high=1.5), T(3, low=0.5, high=1.5), T(3))],
            ["_batch_norm_no_update"],
        ),
        spec(
            "_native_batch_norm_legit_functional",
            lambda x, m, v, w, b: A._native_batch_norm_legit_functional(x, w, b, m, v, True, 0.1, 1e-5),
            [Case("4x3x5", T(4, 3, 5), T(3), T(3, low=0.5, high=1.5), T(3, low=0.5, high=1.5), T(3))],
            ["_native_batch_norm_legit_functional"],
        ),
        spec(
            "_embedding_bag_dense_backward",
            _embedding_bag_grad,
            [Case("10x6 table, 7 indices in 2 bags", T(10, 6), T(7, kind="index", high=10), T(2, 6))],
            ["_embedding_bag_dense_backward"],
        ),
        spec(
            "fractional_max_pool2d",
            _fractional,
            FRACTIONAL,
            ["fractional_max_pool2d"],
        ),
        spec(
            "fractional_max_pool2d_backward",
            _fractional,
            FRACTIONAL,
            ["fractional_max_pool2d_backward"],
            kind="backward",
        ),
        spec(
            "_upsample_nearest_exact3d",
            lambda x: A._upsample_nearest_exact3d(x, [3, 5, 7]),
            [Case("1x2x2x3x4", T(1, 2, 2, 3, 4))],
            ["_upsample_nearest_exact3d"],
        ),
        spec(
            "affine_grid_generator",
            lambda t: A.affine_grid_generator(t, [2, 1, 4, 5], False),
            [Case("2 thetas, 4x5 grid", T(2, 2, 3))],
            ["affine_grid_generator"],
        ),
        spec(
            "segment_reduce.out",
            lambda x, out=None: A.segment_reduce.out(x, "sum", lengths=_lengths(x), out=out),
            SEGMENTS,
            ["segment_reduce_out"],
            kind="out",
            ref=lambda x: A.segment_reduce(x, "sum", lengths=_lengths(x)),
        ),
        spec(
            "_segment_reduce_backward.out",
            _segment_backward_out,
            SEGMENTS,
            ["_segment_reduce_backward_out"],
            kind="out",
            ref=_segment_backward,
        ),
        spec(
            "unique_dim",
            lambda x: A.unique_dim(x, 0, True, True, True),
            [Case("rows of 0..2, 12x2", T(12, 2, kind="int", low=0, high=3))],
            ["unique_dim"],
            dtypes=INTS,
            compare="exact",
        ),
        spec(
            "_linalg_eigvals",
            lambda x: (
                A._linalg_eigvals(x + x.mT).real.sort().values
            ),  # symmetric: real, sorted for a fixed order
            [Case("6x6", T(6, 6))],
            ["_linalg_eigvals"],
            dtypes=("fp32",),
        ),
        spec(
            "rrelu_with_noise_functional",
            lambda x, n: A.rrelu_with_noise_functional(x, n, 0.125, 0.25, False),
            [Case("33x17", T(33, 17), T(33, 17))],
            ["rrelu_with_noise_functional"],
        ),
        spec(
            "_scaled_mm",
            lambda a, b: A._scaled_mm(*_fp8(a, b), out_dtype=torch.float32),
            MM_FP8,
            ["scaled_mm"],
            dtypes=("fp32",),
            ref=_scaled_mm_ref,
        ),
        spec(
            "_scaled_mm.out",
            lambda a, b, out=None: A._scaled_mm.out(*_fp8(a, b), out_dtype=torch.float32, out=out),
            MM_FP8,
            ["scaled_mm_out"],
            kind="out",
            dtypes=("fp32",),
            ref=_scaled_mm_ref,
        ),
        spec(
            "dequantize.self",
            lambda x: A.dequantize.self(torch.quantize_per_tensor(x, 0.05, 3, torch.qint8)),
            X,
            ["dequantize"],
            dtypes=("fp32",),
            upcast=False,  # quantisation rounds in the case dtype; float64 has no quantize_per_tensor
        ),
        spec(
            "_nested_view_from_buffer_copy",
            lambda b: A._nested_view_from_buffer_copy(b, *_nested_meta(b.device)).to_padded_tensor(0.0),
            [Case("buffer of 2x3 and 1x4", T(10))],
            ["_nested_view_from_buffer_copy"],
            dtypes=("fp32",),
        ),
        spec(
            "_jagged_to_padded_dense_forward",
            lambda v: A._jagged_to_padded_dense_forward(
                v, [torch.tensor([0, 2, 7], device=v.device)], [5], 0.5
            ),
            [Case("7 rows of 3 in 2 sequences", T(7, 3))],
            ["_jagged_to_padded_dense_forward"],
        ),
        # metadata ops: their (integer / boolean) answers, as tensors so they are compared
        spec(
            "sym_storage_offset",
            lambda x: torch.tensor(A.sym_storage_offset(x[1:])),
            X,
            ["sym_storage_offset"],
            dtypes=("fp32",),
            compare="exact",
        ),
        spec(
            "_has_compatible_shallow_copy_type",
            lambda x, y: torch.tensor(A._has_compatible_shallow_copy_type(x, y)),
            XY,
            ["_has_compatible_shallow_copy_type"],
            dtypes=("fp32",),
            compare="exact",
        ),
        spec(
            "_make_dep_token",
            lambda x: (A._make_dep_token(device=x.device), x.clone())[1],
            X,
            ["_make_dep_token"],
            dtypes=("fp32",),
        ),
        spec(
            "_functional_sym_constrain_range",
            lambda x: (A._functional_sym_constrain_range(4, 0, 8, x.new_zeros(0)), x.clone())[1],
            X,
            ["_functional_sym_constrain_range"],
            dtypes=("fp32",),
        ),
        # eval mode: dropout is the identity (training mode is random, see kernels/aten/hand_random.py)
        spec("alpha_dropout", lambda x: A.alpha_dropout(x, 0.3, False), X, ["alpha_dropout"]),
        spec("feature_dropout", lambda x: A.feature_dropout(x, 0.3, False), X, ["feature_dropout"]),
        spec("feature_dropout_", lambda x: A.feature_dropout_(x, 0.3, False), X, ["feature_dropout_"]),
        # aten::range without a step (A.range(...) would pick range.step)
        spec(
            "range",
            lambda x: A.range.default(-2, 2.5, device=x.device),
            [Case("-2..2.5", T(1))],
            ["range_op", "range"],  # FlagGems imports ops.range as range_op: either reader's spelling
            dtypes=("fp32",),
        ),
    ]
)
