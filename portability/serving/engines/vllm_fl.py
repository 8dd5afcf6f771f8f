"""`vllm-fl`: vLLM with vllm-plugin-FL (distribution `vllm-plugin-fl`, module `vllm_fl`), FlagOS's vLLM
platform plugin that routes vLLM's operators to FlagGems. It is not on PyPI; the version read here
(v0.2.0-43 of github.com/flagos-ai/vllm-plugin-FL's main, read from a fork mirror at 38e7dbc) targets
vLLM 0.20.2.

The plugin registers entry points `fl = vllm_fl:register` in group `vllm.platform_plugins` (returns
`vllm_fl.platform.PlatformFL`) and `fl = vllm_fl:register_model` in `vllm.general_plugins`. vLLM
activates one platform plugin at most, so runs set `VLLM_PLUGINS=fl` (both groups are filtered by that
list). Its switches: `VLLM_FL_PREFER=flagos|vendor|reference` (which implementation the dispatcher
prefers), `USE_FLAGGEMS=1|0`, `VLLM_FL_PREFER_ENABLED`, and `VLLM_FL_FLAGOS_WHITELIST` /
`VLLM_FL_FLAGOS_BLACKLIST` (comma-separated op names; setting both is an error in the plugin).
Backend `torch` = FL platform with the vendor implementations and FlagGems off (vLLM's FLASH_ATTN
attention); backend `flaggems` = prefer FlagOS (FlagGems) implementations (vLLM's TRITON_ATTN attention,
or the plugin's FlagGems attention with `VLLM_FL_USE_FLAGGEMS_ATTN=1`). The whitelist filters both
`flag_gems.only_enable` and the plugin's own ops (`OOT_OPS`, `attention_backend` included), so the
bisection's universe is FlagGems' functions plus `OOT_OPS`.

vLLM catches any exception from a platform plugin's `register()` (or from importing it: on a host with
no accelerator `import flag_gems` raises), logs it and falls back to its own platform (CUDA, CPU...), so
a run that succeeds proves nothing about the plugin. The engine process therefore checks that vLLM's
`current_platform` is a `PlatformFL` once its engine has run (`fl_platform_error`); if not, the row is an
error naming the platform vLLM used (the engine log has the plugin's exception). The plugin's
`register()` also sets `VLLM_WORKER_MULTIPROC_METHOD=spawn` where unset.

How to run it on a GPU box with vLLM 0.20.2 and flag-gems but no package registry: on a connected
machine, `tools/build-vllm-fl-wheel.sh SRC .whl` (SRC: a checkout or export of vllm-plugin-FL) builds
its pure-Python wheel and downloads the PyYAML and nvidia-ml-py wheels the box may lack into `.whl/`;
carry the checkout there and run `tools/gpu-run.sh RUN_DIR --serving-only --engines vllm-fl`, which
installs `.whl/*.whl` without dependencies (or `pip install --no-deps .whl/*.whl` yourself).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from portability.backends.base import Availability, package_version
from portability.serving.engines.vllm import VllmEngine

PLUGIN_DIST = "vllm-plugin-fl"
PLATFORM_GROUP = "vllm.platform_plugins"
PLUGIN_NAME = "fl"
# vllm-plugin-FL's own out-of-tree ops and attention switch, beside FlagGems' aten op names
OOT_OPS = ("silu_and_mul", "gelu_and_mul", "rms_norm", "rotary_embedding", "attention_backend")
FL_PLATFORM = "vllm_fl.platform.PlatformFL"


def fl_entry_point() -> str | None:
    for ep in importlib.metadata.entry_points(group=PLATFORM_GROUP):
        if ep.name == PLUGIN_NAME:
            return ep.value
    return None


def fl_platform_error() -> str | None:
    """None when vLLM's active platform (in this process) is vllm-plugin-FL's PlatformFL, else why not.
    Compares names, so vllm_fl is never imported here (resolving vLLM's platform may import it)."""
    from vllm.platforms import current_platform

    cls = type(current_platform)
    if f"{cls.__module__}.{cls.__qualname__}" == FL_PLATFORM:
        return None
    return (
        f"vllm-plugin-FL did not activate: vLLM's platform is {cls.__qualname__} (vLLM falls back silently "
        "when the plugin's register() fails; see the engine log)"
    )


def _require_fl_platform() -> None:
    if (reason := fl_platform_error()) is not None:
        raise RuntimeError(reason)


class VllmFLEngine(VllmEngine):
    name = "vllm-fl"
    packages = (*VllmEngine.packages, PLUGIN_DIST)

    def probe(self, backend: str, device: str) -> Availability:
        base = super().probe(backend, device)
        if not base.available:
            return base
        target = fl_entry_point()
        if target is None:
            return Availability.unavailable(
                f"vllm-plugin-FL is not installed (no '{PLUGIN_NAME}' entry point in group {PLATFORM_GROUP}; "
                "it is not on PyPI: build its wheel from github.com/flagos-ai/vllm-plugin-FL with "
                "tools/build-vllm-fl-wheel.sh and pip install --no-deps it)"
            )
        if device.split(":")[0] == "cpu":
            return Availability.unavailable(
                "vllm-plugin-FL's PlatformFL targets accelerators; x86 CPU hosts keep vLLM's CPU platform"
            )
        return Availability.ok()

    def env(
        self, backend: str, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> dict[str, Any]:
        env: dict[str, Any] = {"VLLM_PLUGINS": PLUGIN_NAME, "VLLM_FL_FLAGOS_BLACKLIST": None}
        if backend == "flaggems":
            env.update(VLLM_FL_PREFER="flagos", USE_FLAGGEMS="1", VLLM_FL_PREFER_ENABLED="true")
            env["VLLM_FL_FLAGOS_WHITELIST"] = ",".join(include) if include is not None else None
            if include is None and exclude:  # the plugin refuses both lists at once
                env["VLLM_FL_FLAGOS_BLACKLIST"] = ",".join(exclude)
        else:
            env.update(VLLM_FL_PREFER="vendor", USE_FLAGGEMS="0", VLLM_FL_FLAGOS_WHITELIST=None)
        return env

    # -- worker side: the engine is built by VllmEngine; refuse to report plain vLLM as vllm-fl ---------
    def throughput(self, spec: dict[str, Any]) -> dict[str, Any]:
        result = super().throughput(spec)
        _require_fl_platform()
        return result

    def logprobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        result = super().logprobs(spec)
        _require_fl_platform()
        return result

    def versions(self) -> dict[str, str]:
        found = super().versions()
        if v := package_version(PLUGIN_DIST):
            found[PLUGIN_DIST] = v
        return found
