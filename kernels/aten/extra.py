"""Hand-written specs for FlagGems-registered aten overloads that OpInfo does not reach (see opinfo.py):
Scalar/out/in-place overloads of composite ops, bitwise and logical odds and ends, and the random ops,
which are checked statistically (portability.distributions), not elementwise. Each spec calls its overload
directly (`torch.ops.aten.divide.Scalar`), so what it covers is unambiguous; the reference is the same
overload on the CPU in float64 (or the functional form, for out= variants)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from portability.distributions import (
    Bernoulli,
    Categorical,
    Dropout,
    Exponential,
    Normal,
    Permutation,
    Uniform,
)
from portability.spec import Case, OpSpec, T

A = torch.ops.aten
F32 = ("fp32", "fp16", "bf16")
INTS = ("int64", "int32")
X = [Case("33x17", T(33, 17)), Case("strided 7x13", T(7, 13, layout="strided"))]
XPOS = [
    Case("33x17", T(33, 17, low=0.5, high=2.0)),
    Case("strided 7x13", T(7, 13, layout="strided", low=0.5, high=2)),
]
XY = [
    Case("33x17", T(33, 17), T(33, 17, low=0.5, high=2.0)),
    Case("broadcast 7x13 by 13", T(7, 13), T(13, low=0.5)),
]
INT1 = [Case("ints 33x17", T(33, 17, kind="int", low=-50, high=50))]
INT2 = [Case("ints 33x17", T(33, 17, kind="int", low=-50, high=50), T(33, 17, kind="int", low=-50, high=50))]
BIG = [Case("65536", T(1 << 16))]


def spec(
    key: str, fn: Callable[..., Any], cases: Sequence[Case], flaggems: Sequence[str], **kw: Any
) -> OpSpec:
    kind = kw.get("kind", "inplace" if key.split(".")[0].endswith("_") else "functional")
    kw["kind"] = kind
    return OpSpec(f"aten.{key}", fn, cases=cases, flaggems=tuple(flaggems), tags=("aten", "hand", kind), **kw)


def out(key: str, functional: Callable[..., Any], cases: Sequence[Case], flaggems: Sequence[str], **kw: Any):
    overload = getattr(A, key.split(".")[0])
    overload = getattr(overload, key.split(".")[1])

    def call(*args: Any, out: Any = None, **kwargs: Any) -> Any:
        return overload(*args, out=out, **kwargs)

    return spec(key, call, cases, flaggems, ref=functional, kind="out", **kw)


def _permuted(n: int) -> torch.Tensor:
    return (torch.arange(n) * 7 + 3) % n


SPECS = [
    # composite aliases and their Scalar / rounding-mode / in-place overloads
    spec("absolute", A.absolute, X, ["absolute"]),
    spec("arcsinh", A.arcsinh, X, ["arcsinh"]),
    out("arcsinh.out", A.arcsinh, X, ["arcsinh_out"]),
    spec("arcsinh_", A.arcsinh_, X, ["arcsinh_"]),
    spec("arctanh_", A.arctanh_, [Case("33x17", T(33, 17, low=-0.9, high=0.9))], ["arctanh_"]),
    spec("clamp_", lambda x: A.clamp_(x, -0.5, 0.5), X, ["clamp_"]),
    spec("clamp_min_", lambda x: A.clamp_min_(x, -0.25), X, ["clamp_min_"]),
    spec("clip_", lambda x: A.clip_(x, -0.5, 0.5), X, ["clip_"]),
    spec("gelu_", A.gelu_, X, ["gelu_"]),
    spec("relu_", A.relu_, X, ["relu_"]),
    spec("hardswish_", A.hardswish_, [Case("33x17", T(33, 17, low=-4, high=4))], ["hardswish_"]),
    out("hardsigmoid.out", A.hardsigmoid, [Case("33x17", T(33, 17, low=-4, high=4))], ["hardsigmoid_out"]),
    spec("div.Scalar_mode", lambda x: A.div.Scalar_mode(x, 0.7, rounding_mode="floor"), X, ["div_mode"]),
    spec("div_.Scalar", lambda x: A.div_.Scalar(x, 0.7), X, ["true_divide_"]),
    spec("div_.Scalar_mode", lambda x: A.div_.Scalar_mode(x, 0.7, rounding_mode="trunc"), X, ["div_mode_"]),
    spec("divide.Scalar", lambda x: A.divide.Scalar(x, 0.7), X, ["true_divide"]),
    # The only op_db sample that reaches gt.Scalar is logcumsumexp's backward, whose gradient is
    # ill-conditioned: on an H100 torch@cuda missed the float64 CPU reference by up to 3.6e-3 at fp32,
    # exactly as FlagGems did. Called directly, the boolean result is compared exactly.
    spec("gt.Scalar", lambda x: A.gt.Scalar(x, 0.25), X, ["gt_scalar"]),
    spec(
        "divide.Scalar_mode", lambda x: A.divide.Scalar_mode(x, 0.7, rounding_mode="floor"), X, ["div_mode"]
    ),
    spec(
        "divide.Tensor_mode", lambda x, y: A.divide.Tensor_mode(x, y, rounding_mode="trunc"), XY, ["div_mode"]
    ),
    spec("divide_.Scalar", lambda x: A.divide_.Scalar(x, 0.7), X, ["true_divide_"]),
    spec(
        "divide_.Scalar_mode",
        lambda x: A.divide_.Scalar_mode(x, 0.7, rounding_mode="floor"),
        X,
        ["div_mode_"],
    ),
    spec("divide_.Tensor", A.divide_.Tensor, XY, ["true_divide_"]),
    spec(
        "divide_.Tensor_mode",
        lambda x, y: A.divide_.Tensor_mode(x, y, rounding_mode="floor"),
        XY,
        ["div_mode_"],
    ),
    spec("true_divide.Scalar", lambda x: A.true_divide.Scalar(x, 0.7), X, ["true_divide"]),
    spec("true_divide_.Scalar", lambda x: A.true_divide_.Scalar(x, 0.7), X, ["true_divide_"]),
    spec("floor_divide.Scalar", lambda x: A.floor_divide.Scalar(x, 7), INT1, ["floor_divide"], dtypes=INTS),
    spec(
        "floor_divide_.Scalar", lambda x: A.floor_divide_.Scalar(x, 7), INT1, ["floor_divide_"], dtypes=INTS
    ),
    spec(
        "remainder.Scalar_Tensor",
        lambda y: A.remainder.Scalar_Tensor(5, y),
        [Case("33x17", T(33, 17, kind="int", low=1, high=9))],
        ["remainder"],
        dtypes=INTS,
    ),
    spec("remainder_.Scalar", lambda x: A.remainder_.Scalar(x, 7), INT1, ["remainder_"], dtypes=INTS),
    # comparisons: the reference in the case dtype (0.1 rounded to bf16 is not 0.1; see OpSpec.upcast)
    spec("greater.Scalar", lambda x: A.greater.Scalar(x, 0.1), X, ["greater_scalar"], upcast=False),
    spec("greater.Tensor", A.greater.Tensor, XY, ["greater"], upcast=False),
    spec(
        "greater.Scalar_out",
        lambda x, out=None: A.greater.Scalar_out(x, 0.1, out=out),
        X,
        ["greater_scalar_out"],
        kind="out",
        ref=lambda x: A.greater.Scalar(x, 0.1),
        upcast=False,
    ),
    # bitwise / logical on integers
    spec(
        "bitwise_and.Scalar", lambda x: A.bitwise_and.Scalar(x, 6), INT1, ["bitwise_and_scalar"], dtypes=INTS
    ),
    spec(
        "bitwise_and.Scalar_Tensor",
        lambda x: A.bitwise_and.Scalar_Tensor(6, x),
        INT1,
        ["bitwise_and_scalar_tensor"],
        dtypes=INTS,
    ),
    spec(
        "bitwise_and_.Scalar",
        lambda x: A.bitwise_and_.Scalar(x, 6),
        INT1,
        ["bitwise_and_scalar_"],
        dtypes=INTS,
    ),
    spec("bitwise_or.Scalar", lambda x: A.bitwise_or.Scalar(x, 6), INT1, ["bitwise_or_scalar"], dtypes=INTS),
    spec(
        "bitwise_or.Scalar_Tensor",
        lambda x: A.bitwise_or.Scalar_Tensor(6, x),
        INT1,
        ["bitwise_or_scalar_tensor"],
        dtypes=INTS,
    ),
    spec(
        "bitwise_or_.Scalar", lambda x: A.bitwise_or_.Scalar(x, 6), INT1, ["bitwise_or_scalar_"], dtypes=INTS
    ),
    spec("__or__.Scalar", lambda x: A.__or__.Scalar(x, 6), INT1, ["bitwise_or_scalar"], dtypes=INTS),
    spec("__or__.Tensor", A.__or__.Tensor, INT2, ["bitwise_or_tensor"], dtypes=INTS),
    spec(
        "__ior__.Scalar",
        lambda x: A.__ior__.Scalar(x, 6),
        INT1,
        ["bitwise_or_scalar_"],
        dtypes=INTS,
        kind="inplace",
    ),
    spec("__ior__.Tensor", A.__ior__.Tensor, INT2, ["bitwise_or_tensor_"], dtypes=INTS, kind="inplace"),
    spec("isin.Scalar_Tensor", lambda t: A.isin.Scalar_Tensor(7, t), INT1, ["isin"], dtypes=INTS),
    spec("isin.Tensor_Scalar", lambda x: A.isin.Tensor_Scalar(x, 7), INT1, ["isin"], dtypes=INTS),
    spec(
        "_is_all_true",
        A._is_all_true,
        [Case("mask 64", T(64, kind="bool"))],
        ["_is_all_true"],
        dtypes=("fp32",),
    ),
    # fills, copies, reductions into out=
    spec(
        "copy_",
        A.copy_,
        [
            Case("33x17 from a strided view", T(33, 17), T(33, 17, layout="strided")),
            Case("broadcast a row", T(33, 17), T(17)),
        ],
        ["copy_"],
    ),
    spec("fill.Tensor", lambda x, v: A.fill.Tensor(x, v), [Case("33x17", T(33, 17), T())], ["fill_tensor"]),
    spec(
        "fill_.Tensor", lambda x, v: A.fill_.Tensor(x, v), [Case("33x17", T(33, 17), T())], ["fill_tensor_"]
    ),
    spec(
        "fill.Scalar_out",
        lambda x, out=None: A.fill.Scalar_out(x, 0.5, out=out),
        X,
        ["fill_scalar_out"],
        kind="out",
        ref=lambda x: A.fill.Scalar(x, 0.5),
    ),
    spec(
        "fill.Tensor_out",
        lambda x, v, out=None: A.fill.Tensor_out(x, v, out=out),
        [Case("33x17", T(33, 17), T())],
        ["fill_tensor_out"],
        kind="out",
        ref=A.fill.Tensor,
    ),
    spec("zero", A.zero, X, ["zero"]),
    spec("zero.out", lambda x, out=None: A.zero.out(x, out=out), X, ["zero_out"], kind="out", ref=A.zero),
    spec("lift_fresh_copy", A.lift_fresh_copy, X, ["lift_fresh_copy"]),
    out("sum.out", A.sum.default, X, ["sum_out"], atol={"fp16": 1e-2, "bf16": 1e-1}),
    spec(
        "pixel_unshuffle.out",
        lambda x, out=None: A.pixel_unshuffle.out(x, 2, out=out),
        [Case("2x3x8x6", T(2, 3, 8, 6))],
        ["pixel_unshuffle_out"],
        kind="out",
        ref=lambda x: A.pixel_unshuffle(x, 2),
    ),
    spec(
        "reflection_pad1d.out",
        lambda x, out=None: A.reflection_pad1d.out(x, [2, 3], out=out),
        [Case("2x3x9", T(2, 3, 9))],
        ["reflection_pad1d_out"],
        kind="out",
        ref=lambda x: A.reflection_pad1d(x, [2, 3]),
    ),
    spec(
        "reflection_pad2d.out",
        lambda x, out=None: A.reflection_pad2d.out(x, [2, 3, 1, 2], out=out),
        [Case("2x3x9x8", T(2, 3, 9, 8))],
        ["reflection_pad2d_out"],
        kind="out",
        ref=lambda x: A.reflection_pad2d(x, [2, 3, 1, 2]),
    ),
    spec(
        "replication_pad1d.out",
        lambda x, out=None: A.replication_pad1d.out(x, [2, 3], out=out),
        [Case("2x3x9", T(2, 3, 9))],
        ["replication_pad1d_out"],
        kind="out",
        ref=lambda x: A.replication_pad1d(x, [2, 3]),
    ),
    spec(
        "quantile",
        lambda x: A.quantile(x, torch.tensor([0.1, 0.5, 0.9], dtype=x.dtype, device=x.device), 1),
        [Case("33x17", T(33, 17))],
        ["quantile"],
        dtypes=("fp32",),
    ),
    # scatter with a reduction: a permutation as destinations keeps every result well defined
    spec(
        "scatter.reduce",
        lambda x, src: A.scatter.reduce(
            x,
            1,
            _permuted(x.shape[1]).to(x.device).expand(x.shape[0], -1).contiguous(),
            src,
            reduce="multiply",
        ),
        [Case("8x17", T(8, 17), T(8, 17))],
        ["scatter"],
    ),
    spec(
        "scatter_.reduce",
        lambda x, src: A.scatter_.reduce(
            x, 1, _permuted(x.shape[1]).to(x.device).expand(x.shape[0], -1).contiguous(), src, reduce="add"
        ),
        [Case("8x17", T(8, 17), T(8, 17))],
        ["scatter_"],
    ),
    spec(
        "_index_put_impl_",
        lambda x, v: A._index_put_impl_(x, [_permuted(x.shape[0])[:5].to(x.device)], v, False, False),
        [Case("33x17", T(33, 17), T(5, 17))],
        ["_index_put_impl_"],
    ),
    spec(
        "conv2d.padding",
        lambda x, w, b: A.conv2d.padding(x, w, b, [1, 1], "same"),
        [Case("2x4x9x9 * 6x4x3x3", T(2, 4, 9, 9), T(6, 4, 3, 3), T(6))],
        ["conv2d"],
        atol={"fp16": 1e-2, "bf16": 5e-2},
    ),
    spec(
        "_weight_norm_interface",
        lambda v, g: A._weight_norm_interface(v, g, 0),
        [Case("8x5", T(8, 5), T(8, 1, low=0.5))],
        ["weight_norm_interface"],
    ),
    spec(
        "_weight_norm_interface_backward",
        lambda v, g: A._weight_norm_interface(v, g, 0)[0],
        [Case("8x5", T(8, 5), T(8, 1, low=0.5))],
        ["weight_norm_interface_backward"],
        kind="backward",
    ),
    spec(
        "_upsample_bicubic2d_aa",
        lambda x: A._upsample_bicubic2d_aa(x, [5, 7], False),
        [Case("1x2x9x11", T(1, 2, 9, 11))],
        ["_upsample_bicubic2d_aa"],
        dtypes=("fp32",),  # torch's CPU kernel (the reference) has no fp16/bf16
    ),
    spec(
        "_upsample_bicubic2d_aa_backward",
        lambda x: F.interpolate(x, size=(5, 7), mode="bicubic", antialias=True),
        [Case("1x2x9x11", T(1, 2, 9, 11))],
        ["_upsample_bicubic2d_aa_backward"],
        kind="backward",
        dtypes=("fp32",),
    ),
    spec("_assert_async", lambda x: (A._assert_async(x.gt(-2).all()), x.clone())[1], X, ["_assert_async"]),
    spec(
        "_functional_sym_constrain_range_for_size",
        lambda x: (A._functional_sym_constrain_range_for_size(4, 0, 8, x.new_zeros(0)), x.clone())[1],
        X,
        ["_functional_sym_constrain_range_for_size"],
        dtypes=("fp32",),
    ),
    spec(
        "rrelu_with_noise_backward",
        lambda g, x, n: A.rrelu_with_noise_backward(g, x, n, 0.125, 0.25, True, False),
        [Case("33x17", T(33, 17), T(33, 17), T(33, 17, low=0.125, high=0.25))],
        ["rrelu_with_noise_backward"],
    ),
    # random: distributions, never elementwise
    spec(
        "uniform_",
        lambda x: A.uniform_(x, -2.0, 3.0),
        BIG,
        ["uniform_"],
        kind="random",
        distribution=Uniform(low=-2.0, high=3.0),
        dtypes=("fp32", "bf16"),
    ),
    spec(
        "exponential_",
        lambda x: A.exponential_(x, 2.0),
        BIG,
        ["exponential_"],
        kind="random",
        distribution=Exponential(rate=2.0),
        dtypes=("fp32",),
    ),
    spec(
        "normal.Tensor_Tensor",
        lambda m, s: A.normal.Tensor_Tensor(m * 0 + 1.5, s * 0 + 2.0),
        [Case("65536", T(1 << 16), T(1 << 16))],
        ["normal_tensor_tensor"],
        kind="random",
        distribution=Normal(mean=1.5, std=2.0),
        dtypes=("fp32",),
    ),
    spec(
        "normal.float_Tensor",
        lambda s: A.normal.float_Tensor(-1.0, s * 0 + 0.5),
        BIG,
        ["normal_float_tensor"],
        kind="random",
        distribution=Normal(mean=-1.0, std=0.5),
        dtypes=("fp32",),
    ),
    spec(
        "rand_like", A.rand_like, BIG, ["rand_like"], kind="random", distribution=Uniform(), dtypes=("fp32",)
    ),
    spec(
        "randn_like",
        A.randn_like,
        BIG,
        ["randn_like"],
        kind="random",
        distribution=Normal(),
        dtypes=("fp32",),
    ),
    spec(
        "randperm",
        lambda x: A.randperm(x.shape[0], device=x.device),
        [Case("n=4096", T(4096))],
        ["randperm"],
        kind="random",
        distribution=Permutation(4096),
        dtypes=("fp32",),
    ),
    spec(
        "multinomial",
        lambda p: A.multinomial(p, 4096, True),
        [Case("4 rows x 16 categories", T(4, 16, low=0.1, high=1.0))],
        ["multinomial"],
        kind="random",
        distribution=Categorical(replacement=True),
        dtypes=("fp32",),
    ),
    spec(
        "multinomial without replacement",
        lambda p: A.multinomial(p, 4, False),
        [Case("4096 rows x 8", T(4096, 8, low=0.5, high=1.0))],
        ["multinomial"],
        kind="random",
        distribution=Categorical(replacement=False),
        dtypes=("fp32",),
    ),
    spec(
        "native_dropout",
        lambda x: A.native_dropout(x, 0.3, True),
        BIG,
        ["dropout"],
        kind="random",
        distribution=Dropout(0.3),
        dtypes=("fp32",),
    ),
    spec(
        "native_dropout_backward",
        lambda g, m: A.native_dropout_backward(g, m, 1 / 0.7),
        [Case("33x17", T(33, 17), T(33, 17, kind="bool"))],
        ["dropout_backward"],
    ),
    spec(
        "rand",
        lambda x: A.rand([x.shape[0]], device=x.device),
        BIG,
        ["rand"],
        kind="random",
        distribution=Uniform(),
        dtypes=("fp32",),
    ),
    spec(
        "randn",
        lambda x: A.randn([x.shape[0]], device=x.device),
        BIG,
        ["randn"],
        kind="random",
        distribution=Normal(),
        dtypes=("fp32",),
    ),
    spec(
        "normal_",
        lambda x: A.normal_(x, 0.5, 2.0),
        BIG,
        ["normal_"],
        kind="random",
        distribution=Normal(mean=0.5, std=2.0),
        dtypes=("fp32", "bf16"),
    ),
    spec(
        "normal.Tensor_float",
        lambda m: A.normal.Tensor_float(m * 0 - 3.0, 0.25),
        BIG,
        ["normal_tensor_float"],
        kind="random",
        distribution=Normal(mean=-3.0, std=0.25),
        dtypes=("fp32",),
    ),
    spec(
        "bernoulli_.float",
        lambda x: A.bernoulli_.float(x, 0.25),
        BIG,
        ["bernoulli_"],
        kind="random",
        distribution=Bernoulli(0.25),
        dtypes=("fp32",),
    ),
]
