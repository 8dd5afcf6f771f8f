"""Operator classes with planted misbehaviour, loaded through `PORTABILITY_SPECS` by tests/test_op_classes.py
and run on the eager torch backend: `fn` is the implementation under test (some deliberately wrong), `ref`
the correct call. Names say what is expected: `good_*` must pass, `bad_*` must fail."""

import torch
import torch.nn.functional as F

from portability.distributions import Bernoulli, Normal, Uniform
from portability.spec import Case, OpSpec, T

F32 = ("fp32",)
TAGS = ("planted",)
PAIR = [
    Case("contiguous 64x65", T(64, 65), T(64, 65)),
    Case("strided 33x17", T(33, 17, layout="strided"), T(33, 17)),
]
ONE = [Case("contiguous 64x65", T(64, 65)), Case("transposed 65x64", T(65, 64, layout="transposed"))]
SAMPLES = [Case("65536", T(1 << 16))]


def _shift_other(x, y):
    y.add_(1.0)  # writes its second input
    return x.add_(y - 1.0)


class _WrongGeluGrad(torch.autograd.Function):
    """Exact GELU forward, a gradient 10% too small (a broken backward kernel)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.gelu(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x_ = x.detach().requires_grad_()
            (g,) = torch.autograd.grad(F.gelu(x_), x_, grad)
        return 0.9 * g


def _topk_last_ties(x):
    """Top-k whose tie-breaking prefers the last of equal elements: valid, just another order."""
    n = x.shape[-1]
    values, idx = torch.topk(x.flip(-1), 8, dim=-1)
    return values, n - 1 - idx


def _topk_off_by_one(x):
    values, idx = torch.topk(x, 8, dim=-1)
    return values, (idx + 1) % x.shape[-1]


def _batch_norm(training: bool):
    def call(x, w, b, mean, var):
        return torch.ops.aten.native_batch_norm(x, w, b, mean, var, training, 0.1, 1e-5)

    return call


def _bn_eval_sized_stats(x, w, b, mean, var):
    """Eval mode as CUDA returns it: the saved statistics C-sized where the CPU returns them empty."""
    out, _, _ = _batch_norm(False)(x, w, b, mean, var)
    return out, torch.zeros(x.shape[1]), torch.ones(x.shape[1])


def _bn_eval_wrong_output(x, w, b, mean, var):
    out, saved_mean, saved_invstd = _bn_eval_sized_stats(x, w, b, mean, var)
    return out * 1.1, saved_mean, saved_invstd


def _bn_train_wrong_stats(x, w, b, mean, var):
    out, saved_mean, saved_invstd = _batch_norm(True)(x, w, b, mean, var)
    return out, saved_mean + 1.0, saved_invstd


BATCH_NORM = [Case("3x2x4", T(3, 2, 4), T(2), T(2), T(2), T(2, low=0.5, high=2.0))]


def _unique_reversed(x):
    values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    n = values.numel()
    return values.flip(0), n - 1 - inverse, counts.flip(0)


def _unique_wrong_counts(x):
    values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    return values, inverse, counts.roll(1)


def _unseeded_normal(x):
    return x.normal_(generator=torch.Generator().manual_seed(int.from_bytes(__import__("os").urandom(4))))


UNIQUE = dict(
    ref=lambda x: torch.unique(x, sorted=True, return_inverse=True, return_counts=True),
    cases=[Case("ties 32x33", T(32, 33, kind="ties", low=0, high=9))],
    dtypes=F32,
    compare="unique",
)
TOPK = dict(
    ref=lambda x: torch.topk(x, 8, dim=-1),
    cases=[Case("ties 16x40", T(16, 40, kind="ties", low=0, high=4))],
    dtypes=F32,
    compare="values_of_indices",
)

_SPECS = [
    # in-place
    OpSpec("good_inplace", lambda x, y: x.add_(y), cases=PAIR, dtypes=F32, kind="inplace"),
    OpSpec(
        "bad_inplace_returns_copy",
        torch.add,
        ref=lambda x, y: x.add_(y),
        cases=PAIR,
        dtypes=F32,
        kind="inplace",
    ),
    OpSpec(
        "bad_inplace_writes_other",
        _shift_other,
        ref=lambda x, y: x.add_(y),
        cases=PAIR,
        dtypes=F32,
        kind="inplace",
    ),
    OpSpec("bad_functional_writes_input", lambda x, y: x.add_(y), ref=torch.add, cases=PAIR, dtypes=F32),
    # out=
    OpSpec("good_out", lambda x, out=None: torch.exp(x, out=out), cases=ONE, dtypes=F32, kind="out"),
    OpSpec("bad_out_ignored", lambda x, out=None: torch.exp(x), cases=ONE, dtypes=F32, kind="out"),
    OpSpec(
        "bad_out_not_returned",
        lambda x, out=None: torch.exp(x, out=out).clone(),
        cases=ONE,
        dtypes=F32,
        kind="out",
    ),
    # backward: fn is the forward; its gradient is what is checked
    OpSpec("good_backward", F.gelu, cases=ONE, dtypes=F32, kind="backward"),
    OpSpec("bad_backward", _WrongGeluGrad.apply, ref=F.gelu, cases=ONE, dtypes=F32, kind="backward"),
    # random
    OpSpec(
        "good_normal",
        lambda x: x.normal_(2.0, 3.0),
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Normal(mean=2.0, std=3.0),
    ),
    OpSpec(
        "bad_normal_mean",
        lambda x: x.normal_(2.3, 3.0),
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Normal(mean=2.0, std=3.0),
    ),
    OpSpec(
        "bad_normal_unseeded",
        _unseeded_normal,
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Normal(),
    ),
    OpSpec(
        "good_uniform",
        lambda x: x.uniform_(-2, 5),
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Uniform(low=-2, high=5),
    ),
    OpSpec(
        "bad_uniform_range",
        lambda x: x.uniform_(-2, 5.5),
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Uniform(low=-2, high=5),
    ),
    OpSpec(
        "good_bernoulli",
        lambda x: x.bernoulli_(0.3),
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Bernoulli(0.3),
    ),
    OpSpec(
        "bad_bernoulli_p",
        lambda x: x.bernoulli_(0.31),
        cases=SAMPLES,
        dtypes=F32,
        kind="random",
        distribution=Bernoulli(0.3),
    ),
    # index-returning ops with ties, order-free results
    OpSpec("good_topk_other_ties", _topk_last_ties, **TOPK),
    OpSpec("bad_topk_indices", _topk_off_by_one, **TOPK),
    OpSpec("good_unique_any_order", _unique_reversed, **UNIQUE),
    OpSpec("bad_unique_counts", _unique_wrong_counts, **UNIQUE),
    # eval mode leaves the saved statistics unspecified when the reference returns them empty
    OpSpec(
        "good_batch_norm_eval_sized_stats",
        _bn_eval_sized_stats,
        ref=_batch_norm(False),
        cases=BATCH_NORM,
        dtypes=F32,
        unspecified_if_empty=(1, 2),
    ),
    OpSpec(
        "bad_batch_norm_eval_output",
        _bn_eval_wrong_output,
        ref=_batch_norm(False),
        cases=BATCH_NORM,
        dtypes=F32,
        unspecified_if_empty=(1, 2),
    ),
    OpSpec(
        "bad_batch_norm_train_stats",
        _bn_train_wrong_stats,
        ref=_batch_norm(True),
        cases=BATCH_NORM,
        dtypes=F32,
        writes=(3, 4),
        unspecified_if_empty=(1, 2),
    ),
    OpSpec(
        "good_nonzero_any_order",
        lambda x: torch.nonzero(x).flip(0),
        ref=torch.nonzero,
        cases=[Case("mask 16x17", T(16, 17, kind="bool"))],
        dtypes=F32,
        compare="unordered_rows",
    ),
    OpSpec(
        "bad_nonzero_missing_row",
        lambda x: torch.nonzero(x)[1:],
        ref=torch.nonzero,
        cases=[Case("mask 16x17", T(16, 17, kind="bool"))],
        dtypes=F32,
        compare="unordered_rows",
    ),
]

SPECS = [OpSpec(**{**s.__dict__, "tags": TAGS}) for s in _SPECS]
