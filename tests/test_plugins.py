"""Out-of-tree adapters: the new-adapter skeleton, entry-point plugins and the conformance kit."""

from __future__ import annotations

import importlib.metadata

import pytest
import tomllib


def test_new_adapter_writes_a_package_whose_adapter_passes_the_kit(tmp_path, cli):
    proc = cli("new-adapter", "my-chip", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "portability-my-chip"
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["portability.backends"] == {
        "my-chip": "portability_my_chip:MyChipAdapter"
    }
    adapter = f"{root}/src/portability_my_chip/__init__.py:MyChipAdapter"
    kit = cli("conformance", "--backend", adapter)
    # the skeleton routes nothing yet and says so: the kit fails until an operator is the backend's own
    assert kit.returncode == 1, kit.stdout[-2000:]
    assert "declares none of add, silu, softmax, rms_norm as its own" in kit.stdout
    assert "skipped test_routing_reaches_the_backends_kernels[add]: my-chip declares no add" in kit.stdout
    assert cli("new-adapter", "my-chip", "--out", str(tmp_path)).returncode == 2  # never overwrites
    assert cli("new-adapter", "My Chip!", "--out", str(tmp_path)).returncode == 2


def test_the_kit_fails_an_adapter_that_breaks_the_contract(cli):
    kit = cli("conformance", "--backend", "tests/fault_adapters/raises.py:RaisingAdapter")
    assert kit.returncode == 1
    assert "test_declared_dtypes_are_known_and_honoured FAILED" in kit.stdout
    assert "reports no kernel launch count, so routing cannot be verified" in kit.stdout


INSTALLED = {ep.name for ep in importlib.metadata.entry_points(group="portability.backends")}


@pytest.mark.skipif(
    "example" not in INSTALLED,
    reason="examples/portability-example-adapter is not installed (`nox -s conformance` installs it)",
)
def test_installed_example_plugin_is_found_by_name_and_passes_every_check(tmp_path, cli):
    kit = cli("conformance", "--backend", "example")
    assert kit.returncode == 0, kit.stdout[-2000:]
    # routing verified (its kernels' launch count rose) and results right for add, silu, softmax; it has
    # no rms_norm, and the summary says so
    assert "12 passed, 2 skipped" in kit.stdout
    assert "skipped test_own_operators_give_right_results[rms_norm]" in kit.stdout
    out = tmp_path / "run"
    proc = cli("run", "--matrix", "examples/portability-example-adapter/matrix.yaml", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "example@" in (out / "scorecard.md").read_text()
