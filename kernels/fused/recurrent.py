"""Linear-attention recurrences in FlagGems 5.3 outside aten (kernels/fused/_common.py): the gated delta
rule (Gated DeltaNet, Qwen3-Next's linear attention, as vLLM's FLA kernels compute it) in its chunked
and recurrent forms. One reference for all three: the token-by-token recurrence in plain torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.fused._common import fused_spec, gems

from portability.spec import Case, T

SCALE = 16**-0.5


def gated_delta_rule(q, k, v, g, beta, state):
    """Per head, a (K, V) state S and for each token t (inputs [batch, time, heads, dim]):
    S ← exp(g_t)·S;  S ← S + k_t ⊗ β_t(v_t − Sᵀk_t);  o_t = Sᵀ(q_t · scale). Returns (o, final S)."""
    s = state.clone()
    out = []
    for t in range(k.shape[1]):
        s = s * torch.exp(g[:, t])[..., None, None]
        kt = k[:, t]
        delta = (v[:, t] - torch.einsum("bhk,bhkv->bhv", kt, s)) * beta[:, t, :, None]
        s = s + kt[..., :, None] * delta[..., None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * SCALE, s))
    return torch.stack(out, 1), s


def _normed(q, k):
    return F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # unit keys keep the delta rule stable


def chunked_gems(q, k, v, g, beta, state):
    q, k = _normed(q, k)
    out = gems("chunk_gated_delta_rule_fwd")(q, k, v, g, beta, SCALE, state.clone(), True)
    return out[1], out[3]  # (g cumsum, o, A, final state, ...): the output and the final state


def wrapper_gems(q, k, v, g, beta):
    q, k = _normed(q, k)
    # the public wrapper, head-first layout [batch, heads, time, dim]
    o, final = gems("chunk_gated_delta_rule")(
        *(x.transpose(1, 2) for x in (q, k, v, beta, g)), 64, None, True, None, True, SCALE
    )
    return o.transpose(1, 2), final


def recurrent_gems(q, k, v, g, beta, state):
    q, k = _normed(q, k)
    o, _ = gems("fused_recurrent_gated_delta_rule_fwd")(q, k, v, g, beta, SCALE, state.clone(), True)
    return o


def _case(name: str, t: int, state: bool = True) -> Case:
    args = [
        T(1, t, 2, 16),
        T(1, t, 2, 16),
        T(1, t, 2, 16),
        T(1, t, 2, low=-0.5, high=0),
        T(1, t, 2, low=0, high=1),
    ]
    return Case(name, *args, *([T(1, 2, 16, 16, low=-0.2, high=0.2)] if state else []))


CASES = [_case("20 tokens, 2 heads of 16", 20), _case("150 tokens, 2 heads of 16", 150)]
TOL = {"atol": {"fp32": 1e-4, "bf16": 5e-2}, "rtol": {"fp32": 1e-4}}
SPECS = [
    fused_spec(
        "chunk_gated_delta_rule_fwd",
        "chunk_gated_delta_rule_fwd",
        lambda q, k, v, g, beta, s: gated_delta_rule(*_normed(q, k), v, g, beta, s),
        chunked_gems,
        cases=CASES,
        dtypes=("fp32", "bf16"),
        tags=("linear-attention",),
        **TOL,
    ),
    fused_spec(
        "chunk_gated_delta_rule",
        "chunk_gated_delta_rule",
        lambda q, k, v, g, beta: gated_delta_rule(*_normed(q, k), v, g, beta, q.new_zeros(1, 2, 16, 16)),
        wrapper_gems,
        cases=[_case("20 tokens, 2 heads of 16, no initial state", 20, state=False)],
        dtypes=("fp32", "bf16"),
        tags=("linear-attention",),
        **TOL,
    ),
    fused_spec(
        "fused_recurrent_gated_delta_rule_fwd",
        "fused_recurrent_gated_delta_rule_fwd",
        lambda q, k, v, g, beta, s: gated_delta_rule(*_normed(q, k), v, g, beta, s)[0],
        recurrent_gems,
        cases=CASES[:1],
        dtypes=("fp32", "bf16"),
        tags=("linear-attention",),
        **TOL,
    ),
]
