"""Time, with FlagGems on, the first and second call of each operator vLLM 0.20.2 runs to return prompt
logprobs (`gpu_model_runner._get_prompt_logprobs_dict` -> `Sampler.compute_logprobs` / `gather_logprobs`):
log_softmax over the vocabulary, topk, gather, and the torch.compile'd `batched_count_greater_than`; plus
the SDPA case that timed out in the operator sweep. One probe per process (run it under `timeout`):

    for p in log_softmax topk20 topk256 gather count_ge sdpa_fp32; do
        timeout 240 python probe_gate_ops.py $p; done
"""

import sys
import time

import flag_gems
import torch

POSITIONS, VOCAB = 63, 151936  # the gate: 2 prompts x 64 tokens, 63 predicted positions each


def timed(fn) -> tuple[float, float]:
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main(name: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(POSITIONS, VOCAB, device="cuda")
    logprobs = logits.log_softmax(-1)
    ids = torch.randint(0, VOCAB, (POSITIONS, 1), device="cuda")
    count_ge = torch.compile(lambda x, v: (x >= v).sum(-1))
    q, k, v = (torch.randn(1, 32, 512, 128, device="cuda") for _ in range(3))
    probes = {
        "log_softmax": lambda: logits.log_softmax(-1, dtype=torch.float32),
        "topk20": lambda: torch.topk(logprobs, 20, dim=-1),
        "topk256": lambda: torch.topk(logprobs, 256, dim=-1),
        "gather": lambda: logprobs.gather(-1, ids),
        "count_ge": lambda: count_ge(logprobs, logprobs.gather(-1, ids)),
        "sdpa_fp32": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
    }
    print(f"probe {name}: start", flush=True)
    with flag_gems.use_gems():
        first, second = timed(probes[name])
    print(f"probe {name}: first call {first:.2f} s, second call {second * 1e3:.3f} ms", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
