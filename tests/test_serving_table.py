"""The serving table of the scorecard (`scorecard/serving_table.py`): latency, both gates, the
vllm-plugin-FL pair, unavailable cells, and where a flaggems cell's time goes."""

from __future__ import annotations

from portability.scorecard.serving_table import render_serving_table


def test_serving_table_escapes_and_shows_latency_and_the_gate():
    rows = [
        {
            "id": "s1",
            "kind": "serving",
            "cell": "torch@cpu",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "weights": "dummy + synthetic",
            "status": "pass",
            "output_tok_s": 1178.4,
            "startup_s": 19.0,
            "ttft_ms_p50": 53.8,
            "ttft_ms_p99": 114.9,
            "tpot_ms_p50": 20.7,
            "tpot_ms_p99": 29.5,
            "ratio_vs_native": 1.0,
            "gate": {
                "verdict": "pass",
                "max_abs_logprob_diff": 9.5e-7,
                "mean_kl": 1e-8,
                "greedy_agreement": 1.0,
            },
        },
        {
            "id": "s2",
            "kind": "serving",
            "cell": "flaggems@cuda",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "status": "fail",
            "ratio_vs_native": 0.8,
            "gate": {"verdict": "fail", "max_abs_logprob_diff": 2.0, "mean_kl": 0.3, "greedy_agreement": 0.5},
            "culprits": ["softmax", "rms_norm"],
        },
        {
            "id": "s3",
            "kind": "serving",
            "cell": "flaggems@cpu",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "status": "unavailable",
            "reason": "flag_gems | failed @someone",
        },
    ]
    table = render_serving_table(rows)
    assert "1178.4" in table and "53.8 / 114.9" in table and "20.7 / 29.5" in table and "0.80x" in table
    assert "pass (Δ 9.5e-07, KL 1.0e-08, greedy 100%)" in table and "softmax, rms\\_norm" in table
    grid, _, unserved = table.partition("\n\n")
    assert len({line.count("|") - line.count("\\|") for line in grid.splitlines()}) == 1
    # unavailable cells are one line below the table, reason kept and escaped
    assert "flaggems@\u200bcpu" not in grid
    assert unserved.startswith("Not served on this host: vllm on flaggems@\u200bcpu (flag\\_gems")
    assert "flag\\_gems \\| failed @\u200bsomeone" in unserved


def test_the_table_says_which_gate_failed_shows_the_pair_and_where_the_time_goes():
    decode = {
        "torch_step_ms": 12.4,
        "step_ms": 181.6,
        "gap_ms": 169.2,
        "ops": [
            {
                "op": "mm",
                "added_ms": 168.9,
                "share": 0.998,
                "calls": 15,
                "torch_calls": 15,
                "flaggems": ["flag_gems.mm"],
            },
            {"op": "addmm", "added_ms": 2.4, "share": 0.014, "calls": 15, "torch_calls": 0, "flaggems": []},
        ],
    }
    rows = [
        {
            "id": "serving:vllm-fl:flaggems@cuda:qwen3-4b:tp2",
            "engine": "vllm-fl",
            "cell": "flaggems@cuda",
            "tensor_parallel_size": 2,
            "status": "fail",
            "ratio_vs_native": 0.14,
            "gate": {
                "verdict": "pass",
                "max_abs_logprob_diff": 0.01,
                "mean_kl": 1e-4,
                "greedy_agreement": 1.0,
            },
            "throughput_gate": {"verdict": "fail", "ratio": 0.14, "min_ratio": 0.8},
            "pair": {
                "text": "vllm-plugin-FL 0.1.0+main.g1 declares vLLM 0.28.0 (branch main), installed 0.20.2",
                "mismatched": True,
            },
            "time_gap": {"decode": decode},
        },
        {
            "id": "serving:vllm-fl:torch@cuda:qwen3-4b",
            "engine": "vllm-fl",
            "cell": "torch@cuda",
            "status": "pass",
            "throughput_gate": {"verdict": "not checked", "min_ratio": 0.8},
        },
    ]
    table = render_serving_table(rows)
    grid, _, gap = table.partition("Where the time goes")
    assert "fail (0.14x &lt; 0.80x)" in grid and "pass (Δ 1.0e-02" in grid  # the throughput gate failed
    assert "not checked (no torch tok/s; limit 0.80x)" in grid
    assert "vllm-fl TP 2: vllm-plugin-FL 0.1.0+main.g1 declares vLLM 0.28.0" in grid and "MISMATCHED" in grid
    mm = next(line for line in gap.splitlines() if "| mm " in line)
    assert "12.40 → 181.60" in mm and "+168.90" in mm and "100%" in mm and "15 → 15" in mm
    assert "flag\\_gems.mm" in mm
