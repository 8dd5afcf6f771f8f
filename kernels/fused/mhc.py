"""DeepSeek-V4's manifold-constrained hyper-connections (mHC) in FlagGems 5.3 (kernels/fused/_common.py):
Sinkhorn normalisation and its implicit-gradient backward, the post-block stream mixing and the HC head.
hc_mult streams of width `hidden` per token; shapes are small. The FlagGems kernels take bfloat16
streams and float32 mixing weights, so the cases are bf16 with float32 side inputs."""

from __future__ import annotations

import torch
from portability.kernels.fused._common import fused_spec, gems

from portability.spec import Case, T

HC, HIDDEN = 4, 64
FP32 = {"dtype": "fp32"}


def sinkhorn(m: torch.Tensor, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """exp(m) alternately normalised over columns then rows, `iters` times: (R, exp(m))."""
    p = torch.exp(m)
    r = p
    for _ in range(iters):
        r = r / r.sum(-2, keepdim=True)
        r = r / r.sum(-1, keepdim=True)
    return r, p


def sinkhorn_backward(r: torch.Tensor, dr: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. the logits of a converged Sinkhorn output r (doubly stochastic), by implicit
    differentiation: solve [[I, r], [rᵀ, I]] [x1; x2] = [rowsum(r·dr); colsum(r·dr)] (least squares: the
    system is singular along (c, -c), which the result does not see), then (dr - x1 - x2ᵀ) · r."""
    n = r.shape[-1]
    eye = torch.eye(n, dtype=r.dtype, device=r.device).expand_as(r)
    system = torch.cat([torch.cat([eye, r], -1), torch.cat([r.mT, eye], -1)], -2)
    rdr = r * dr
    rhs = torch.cat([rdr.sum(-1), rdr.sum(-2)], -1).unsqueeze(-1)
    x = (torch.linalg.pinv(system) @ rhs).squeeze(-1)
    return (dr - x[..., :n, None] - x[..., None, n:]) * r


def mhc_post(x, residual, post_mix, comb_mix):
    """out[t, i] = post_mix[t, i] · x[t] + Σ_j comb_mix[t, j, i] · residual[t, j]."""
    mixed = torch.einsum("tji,tjh->tih", comb_mix.to(residual.dtype), residual)
    post = post_mix.reshape(*post_mix.shape[:2], 1).to(x.dtype)  # (tokens, hc, 1)
    return (post * x[:, None, :] + mixed).to(x.dtype)


def hc_head(hs, fn, scale, base, hc_eps: float = 1e-6, rms_eps: float = 1e-6):
    """The HC head: per-token mixing weights sigmoid(rms-normalised (hs @ fnᵀ) · scale + base) + eps,
    then the weighted sum of the hc_mult streams."""
    t, hc, hidden = hs.shape
    x = hs.reshape(t, hc * hidden).to(fn.dtype)
    rsqrt = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + rms_eps)
    mix = torch.sigmoid(x @ fn.T * rsqrt * scale[0] + base) + hc_eps
    return (mix[..., None] * hs.to(fn.dtype)).sum(1).to(hs.dtype)


def hc_head_gems(name: str, hs, fn, scale, base):
    out = torch.empty(hs.shape[0], hs.shape[2], dtype=hs.dtype, device=hs.device)
    return gems(name)(hs, fn, scale, base, out, hs.shape[2], 1e-6, 1e-6, hs.shape[1])


SINKHORN = [Case("6 tokens of 4x4", T(6, HC, HC, low=-2, high=2))]
BACKWARD = [Case("6 tokens of 4x4", T(6, HC, HC, low=-2, high=2), T(6, HC, HC))]
HEAD = [
    Case(
        "5 tokens, 4 streams of 64",
        T(5, HC, HIDDEN),
        T(HC, HC * HIDDEN, low=-0.1, high=0.1, **FP32),
        T(1, low=0.5, high=1.5, **FP32),
        T(HC, **FP32),
    )
]
POST = [
    Case(
        "5 tokens, 4 streams of 64",
        T(5, HIDDEN),
        T(5, HC, HIDDEN),
        T(5, HC, 1, **FP32),
        T(5, HC, HC, low=0, high=0.5, **FP32),
    )
]
# Sinkhorn's backward is evaluated at Sinkhorn's output: the spec takes logits and converges them first
SPECS = [
    fused_spec(
        "sinkhorn_forward",
        "sinkhorn_forward",
        sinkhorn,
        lambda m: gems("sinkhorn_forward")(m, 20),
        cases=SINKHORN,
        dtypes=("fp32",),
        tags=("mhc", "deepseek"),
    ),
    *[
        fused_spec(
            name,
            name,
            lambda m, dr: sinkhorn_backward(sinkhorn(m, 100)[0], dr),
            lambda m, dr, name=name: gems(name)(sinkhorn(m, 100)[0].float(), dr.float()),
            cases=BACKWARD,
            dtypes=("fp32",),
            atol={"fp32": 1e-4},
            tags=("mhc", "deepseek"),
        )
        for name in ("mhc_bwd", "mhc_bwd_ref")
    ],
    fused_spec(
        "mhc_post",
        "mhc_post",
        mhc_post,
        lambda x, r, post, comb: gems("mhc_post")(x, r, post, comb),
        cases=POST,
        dtypes=("bf16",),
        tags=("mhc", "deepseek"),
    ),
    *[
        fused_spec(
            name,
            name,
            hc_head,
            lambda hs, fn, scale, base, name=name: hc_head_gems(name, hs, fn, scale, base),
            cases=HEAD,
            dtypes=("bf16",),
            tags=("mhc", "deepseek"),
        )
        for name in ("hc_head_fused_kernel", "hc_head_fused_kernel_ref")
    ],
]
