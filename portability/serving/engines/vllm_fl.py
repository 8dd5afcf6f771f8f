"""`vllm-fl`: vLLM with vllm-plugin-FL (distribution `vllm-plugin-fl`, module `vllm_fl`), FlagOS's vLLM
platform plugin that routes vLLM's operators to FlagGems.

The plugin registers entry points `fl = vllm_fl:register` in group `vllm.platform_plugins` (returns
`vllm_fl.platform.PlatformFL`) and `fl = vllm_fl:register_model` in `vllm.general_plugins`. vLLM
activates one platform plugin at most, so runs set `VLLM_PLUGINS=fl` (both groups are filtered by that
list). Its switches: `VLLM_FL_PREFER=flagos|vendor|reference` (which implementation the dispatcher
prefers), `USE_FLAGGEMS=1|0`, `VLLM_FL_PREFER_ENABLED`, and `VLLM_FL_FLAGOS_WHITELIST` /
`VLLM_FL_FLAGOS_BLACKLIST` (comma-separated op names; setting both is an error in the plugin).
Backend `torch` = FL platform with the vendor implementations and FlagGems off; backend `flaggems` =
prefer FlagOS (FlagGems) implementations, with the whitelist used for bisection.
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


def fl_entry_point() -> str | None:
    for ep in importlib.metadata.entry_points(group=PLATFORM_GROUP):
        if ep.name == PLUGIN_NAME:
            return ep.value
    return None


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
                f"pip install {PLUGIN_DIST} from github.com/flagos-ai/vllm-plugin-FL)"
            )
        if device.split(":")[0] == "cpu":
            return Availability.unavailable(
                "vllm-plugin-FL's PlatformFL targets accelerators; x86 CPU hosts keep vLLM's CPU platform"
            )
        return Availability.ok()

    def env(self, backend: str, include: list[str] | None = None) -> dict[str, Any]:
        env: dict[str, Any] = {"VLLM_PLUGINS": PLUGIN_NAME, "VLLM_FL_FLAGOS_BLACKLIST": None}
        if backend == "flaggems":
            env.update(VLLM_FL_PREFER="flagos", USE_FLAGGEMS="1", VLLM_FL_PREFER_ENABLED="true")
            env["VLLM_FL_FLAGOS_WHITELIST"] = ",".join(include) if include is not None else None
        else:
            env.update(VLLM_FL_PREFER="vendor", USE_FLAGGEMS="0", VLLM_FL_FLAGOS_WHITELIST=None)
        return env

    def versions(self) -> dict[str, str]:
        found = super().versions()
        if v := package_version(PLUGIN_DIST):
            found[PLUGIN_DIST] = v
        return found
