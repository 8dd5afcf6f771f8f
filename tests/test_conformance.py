"""The conformance kit can fail: a wrong kernel, a route that reaches nothing, an unavailable backend
or device each fail it (unless a flag allows the last), and its summary names what it skipped and why."""

from __future__ import annotations

ADAPTERS = "tests/fault_adapters"


def test_a_softmax_with_a_padding_bug_fails_the_results_check(cli):
    kit = cli("conformance", "--backend", f"{ADAPTERS}/padding_softmax.py:PaddingSoftmaxAdapter")
    assert kit.returncode == 1, kit.stdout[-3000:]
    assert "FAILED  test_own_operators_give_right_results[softmax]" in kit.stdout
    assert "masked tail 33x65: fail" in kit.stdout
    assert "paddingsoftmax declares no add of its own" in kit.stdout  # the skips, with the reason


def test_a_route_that_reaches_none_of_the_backends_kernels_fails(cli):
    kit = cli("conformance", "--backend", f"{ADAPTERS}/routes_nothing.py:RoutesNothingAdapter")
    assert kit.returncode == 1, kit.stdout[-3000:]
    assert "FAILED  test_routing_reaches_the_backends_kernels[softmax]" in kit.stdout
    assert "fallback: ran native torch, not routesnothing" in kit.stdout


def test_an_unavailable_device_fails_unless_allowed(cli):
    kit = cli("conformance", "--backend", "torch", "--device", "npu")
    assert kit.returncode == 1, kit.stdout[-3000:]
    assert "torch is unavailable on npu on this host" in kit.stdout
    allowed = cli("conformance", "--backend", "torch", "--device", "npu", "--allow-unavailable")
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert "conformance: 1 check(s) verified, 0 failed" in allowed.stdout  # the probe's answer only
    assert "skipped test_versions_are_strings_and_name_torch: torch is unavailable on npu" in allowed.stdout


def test_a_raising_probe_fails(cli):
    kit = cli("conformance", "--backend", f"{ADAPTERS}/raising_probe.py:RaisingProbeAdapter")
    assert kit.returncode == 1 and "planted: driver query failed" in kit.stdout
