"""The base class of serving engines."""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

from portability.backends.base import Availability, package_version

#: how each engine switches a backend on: engines support these backends and no others
BACKENDS = ("torch", "flaggems")


def throughput_figures(
    startup: float, warmup: float, elapsed: float, requests: int, in_tokens: int, out_tokens: int
) -> dict[str, Any]:
    """The throughput row every engine reports: the timed batch only, start-up and warm-up apart."""
    return {
        "startup_s": startup,
        "warmup_s": warmup,
        "elapsed_s": elapsed,
        "output_tokens": out_tokens,
        "output_tok_s": out_tokens / elapsed,
        "total_tok_s": (in_tokens + out_tokens) / elapsed,
        "requests_s": requests / elapsed,
    }


class ServingEngine:
    name: ClassVar[str] = ""
    #: whether the engine has an OpenAI-compatible server (online latency benchmark)
    serves_openai: ClassVar[bool] = False
    #: distributions whose versions are recorded in every row of this engine
    packages: ClassVar[tuple[str, ...]] = ("torch", "flag-gems", "triton")
    #: whether the engine shards the model over several devices (`tensor_parallel_size` > 1)
    tensor_parallel: ClassVar[bool] = False
    #: whether the worker has a `profile` mode (one prefill and one decode step under torch.profiler)
    profiles_steps: ClassVar[bool] = False

    # -- in the runner's process ---------------------------------------------------------------------
    def probe(self, backend: str, device: str) -> Availability:
        """Available, or unavailable with a human reason. Cheap, must not raise."""
        if backend not in BACKENDS:
            return Availability.unavailable(
                f"serving engine '{self.name}' has no switch for backend '{backend}' "
                f"(it serves {', '.join(BACKENDS)})"
            )
        return Availability.ok()

    def tensor_parallel_reason(self, device: str, size: int) -> str | None:
        """None when the engine can serve at this tensor-parallel size, else why not."""
        if size > 1 and not self.tensor_parallel:
            return f"serving engine '{self.name}' runs on one device: no tensor parallelism"
        return None

    def placement_env(self, device: str, tensor_parallel_size: int) -> dict[str, str]:
        """Environment placing the engine's processes (e.g. one CPU core group per rank)."""
        return {}

    def pairing(self) -> Any:
        """The installed stack's declared pairing (`vllm_fl.Pairing`), for engines that have one."""
        return None

    def env(
        self, backend: str, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> dict[str, str]:
        """Environment of every process of a run of `backend`: FlagGems limited to `include` if given,
        else all of it but `exclude`."""
        return {}

    @staticmethod
    def flaggems_env(include: list[str] | None, exclude: list[str] | None) -> dict[str, str]:
        """The hook's switches (`flaggems_hook.enable_from_env`) for the engines that use it."""
        env = {"PORTABILITY_FLAGGEMS_ON": "1"}  # PORTABILITY_FLAGGEMS names the FlagGems nox installs
        if include is not None:
            env["PORTABILITY_FLAGGEMS_INCLUDE"] = ",".join(include)
        elif exclude:
            env["PORTABILITY_FLAGGEMS_EXCLUDE"] = ",".join(exclude)
        return env

    def versions(self) -> dict[str, str]:
        found = {}
        for dist in self.packages:
            if v := package_version(dist):
                found[dist] = v
        return found

    @staticmethod
    def importable(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    def server_command(self, spec: dict[str, Any], port: int) -> list[str]:
        raise NotImplementedError(f"engine '{self.name}' has no OpenAI server")

    # -- in a worker subprocess ----------------------------------------------------------------------
    def throughput(self, spec: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def logprobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def profile(self, spec: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"engine '{self.name}' has no step profile")

    def dispatched_ops(self, spec: dict[str, Any]) -> dict[str, Any]:
        """{"dispatched": aten overload keys the engine's model runs}, or {} when the engine cannot tell
        (the bisection then searches every FlagGems operator)."""
        return {}

    def online(self, spec: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"engine '{self.name}' has no OpenAI server")
