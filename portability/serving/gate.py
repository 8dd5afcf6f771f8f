"""The accuracy gate: teacher-forced prompt log-probabilities, compared position by position.

Every engine returns, for each prompt and each position after the first, the log-probabilities of its
top-k tokens plus the actual next prompt token, as `[[token ids], [logprobs]]`. With k covering the
whole vocabulary the metrics are exact; with a smaller k the KL divergence is taken over the
reference's top-k tokens plus one bucket for the rest of the vocabulary (a token missing from the
engine's own top-k gets the engine's smallest returned logprob, an upper bound).
"""

from __future__ import annotations

import math
from typing import Any

Position = tuple[list[int], list[float]]


# Logprobs per position when matrix.yaml's gate.top_k is 0 and the vocabulary is too large to return whole:
# vLLM's own default max_logprobs. The KL then has a rest-of-vocabulary bucket (see the module docstring);
# max |Δlogprob| of the actual tokens is exact at any k. Not more: with FlagGems on, vLLM's `topk` over
# Qwen3's 151,936 logits at k=256 gave no result in 240 s on an H100 (k=20: 37 s of first-call tuning),
# so the gate measured the logprob plumbing, not the model (docs/scorecards/h100-serving-vllm-2026-11-25).
LARGE_VOCAB_TOP_K = 20


def resolve_top_k(top_k: int, vocab: int) -> int:
    if top_k:
        return min(top_k, vocab)
    return vocab if vocab <= 32768 else LARGE_VOCAB_TOP_K


def compare_logprobs(
    ref: list[list[Position]], got: list[list[Position]], prompts: list[list[int]]
) -> dict[str, float]:
    """max |Δ logprob| of the actual next tokens, mean KL(ref ‖ got) per position, greedy agreement."""
    if len(ref) != len(got) or len(ref) != len(prompts):
        raise ValueError(f"{len(ref)} reference prompts, {len(got)} compared, {len(prompts)} prompts")
    max_diff, kls, agree, positions = 0.0, [], 0, 0
    for r_prompt, g_prompt, tokens in zip(ref, got, prompts, strict=True):
        if len(r_prompt) != len(tokens) - 1 or len(g_prompt) != len(tokens) - 1:
            raise ValueError(f"expected {len(tokens) - 1} positions, got {len(r_prompt)} and {len(g_prompt)}")
        for (r_ids, r_lps), (g_ids, g_lps), target in zip(r_prompt, g_prompt, tokens[1:], strict=True):
            r = dict(zip(r_ids, r_lps, strict=True))
            g = dict(zip(g_ids, g_lps, strict=True))
            if target not in r or target not in g:
                raise ValueError(f"the actual next token {target} is missing from a position's logprobs")
            diff = abs(r[target] - g[target])
            max_diff = max(max_diff, diff if math.isfinite(diff) else math.inf)
            floor = min(g.values())
            p_sum = q_sum = kl = 0.0
            for token, lp in r.items():
                q = g.get(token, floor)
                p = math.exp(lp)
                p_sum += p
                q_sum += math.exp(q)
                kl += p * (lp - q) if p > 0 else 0.0
            p_rest, q_rest = max(0.0, 1.0 - p_sum), max(1e-30, 1.0 - q_sum)
            if p_rest > 1e-12:
                kl += p_rest * math.log(p_rest / q_rest)
            kls.append(max(kl, 0.0) if math.isfinite(kl) else math.inf)
            agree += max(r, key=r.__getitem__) == max(g, key=g.__getitem__)
            positions += 1
    return {
        "max_abs_logprob_diff": max_diff,
        "mean_kl": sum(kls) / len(kls) if kls else math.nan,
        "greedy_agreement": agree / positions if positions else math.nan,
    }


def verdict(metrics: dict[str, float], max_abs_logprob_diff: float, mean_kl: float) -> tuple[str, str]:
    """("pass"|"fail", reason)."""
    d, kl = metrics["max_abs_logprob_diff"], metrics["mean_kl"]
    if math.isfinite(d) and math.isfinite(kl) and d <= max_abs_logprob_diff and kl <= mean_kl:
        return "pass", ""
    return "fail", (
        f"gate failed: max |Δlogprob| {d:.3g} (limit {max_abs_logprob_diff:g}), "
        f"mean KL {kl:.3g} (limit {mean_kl:g}), greedy agreement {metrics['greedy_agreement']:.0%}"
    )


def dense_to_positions(logprobs: Any, top_k: int, targets: list[list[int]]) -> list[list[Position]]:
    """[prompts, positions, vocab] log-probabilities (a tensor) → top-k + actual next token per position."""
    import torch

    lp = torch.as_tensor(logprobs, dtype=torch.float32)
    k = min(top_k, lp.shape[-1])
    values, indices = lp.topk(k, dim=-1)
    out: list[list[Position]] = []
    for p, tokens in enumerate(targets):
        rows: list[Position] = []
        for pos, target in enumerate(tokens[1:]):
            ids, lps = indices[p, pos].tolist(), values[p, pos].tolist()
            if target not in ids:
                ids.append(target)
                lps.append(float(lp[p, pos, target]))
            rows.append((ids, lps))
        out.append(rows)
    return out
