"""Conformance kit: does an adapter keep the BackendAdapter contract? (`portability conformance`)

A pytest plugin and test module in one: `portability conformance --backend NAME --device cpu` runs
`pytest -p portability.conformance <this file>`, so vendors get pytest's reporting (and can run it under
their own CI). Every check verifies or fails with the reason; nothing passes by checking nothing:

- probe answers (with a reason when unavailable); an unavailable backend or device is a failure unless
  `--allow-unavailable`;
- versions are strings; declared dtypes are honoured (a real case matches the reference);
- synchronize really waits; timings are positive and repeatable;
- routing reaches the backend's own code: its `kernel_launches()` count rises for each operator it
  declares (`implements()`); an adapter that cannot count is a failure unless `--allow-unverified-routing`;
- the backend's own operators give right results: every case of CHECK_OPS it implements (up to
  MAX_CHECK_NUMEL input elements) through the real harness (`run_case`): contract, values, routing.

The summary lists what was checked and what was skipped, with the reason.
"""

from __future__ import annotations

import time

import pytest
import torch

from portability.matrix.config import Tolerance
from portability.run.case import CaseRequest, _to, reference, run_case
from portability.run.judge import check_output
from portability.spec import DEFAULT_TOLERANCE, DTYPES

CHECK_OPS = ("add", "silu", "softmax", "rms_norm")
MAX_CHECK_NUMEL = 1 << 20  # cases up to this many input elements: a few seconds on a CPU


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("portability-conformance")
    group.addoption(
        "--conformance-backend", default=None, help="adapter name or module:Class / file.py:Class"
    )
    group.addoption("--conformance-device", default="cpu")
    group.addoption("--allow-unavailable", action="store_true", help="an unavailable backend skips")
    group.addoption(
        "--allow-unverified-routing",
        action="store_true",
        help="an adapter without kernel_launches() skips the routing check instead of failing it",
    )


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """What was checked, and what was skipped and why: a conformance pass must say what it covered."""
    stats = terminalreporter.stats
    checked = [r.nodeid.split("::")[-1] for r in stats.get("passed", []) if r.when == "call"]
    skipped = list(stats.get("skipped", []))
    failed = [r.nodeid.split("::")[-1] for r in stats.get("failed", []) + stats.get("error", [])]
    write = terminalreporter.write_line
    write(f"conformance: {len(checked)} check(s) verified, {len(failed)} failed, {len(skipped)} skipped")
    for name in failed:
        write(f"  FAILED  {name}")
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        write(f"  skipped {report.nodeid.split('::')[-1]}: {reason.removeprefix('Skipped: ')}")


@pytest.fixture(scope="session")
def adapter(request: pytest.FixtureRequest):
    from portability.registry import adapter_class

    name = request.config.getoption("--conformance-backend")
    if not name:
        pytest.fail("no --conformance-backend given: nothing to check")
    return adapter_class(name)(request.config.getoption("--conformance-device"), {})


@pytest.fixture(scope="session")
def available(adapter, request: pytest.FixtureRequest):
    found = adapter.probe()
    if not found.available:
        why = f"{adapter.name} is unavailable on {adapter.device} on this host: {found.reason}"
        if request.config.getoption("--allow-unavailable"):
            pytest.skip(why + " (--allow-unavailable)")
        pytest.fail(why + "; nothing of the adapter could be checked (--allow-unavailable makes this a skip)")
    return adapter


def _spec(name: str):
    from portability.catalog import load_catalog

    return load_catalog()[name]


def _own_or_skip(adapter, op: str):
    spec = _spec(op)
    why = adapter.unsupported_reason(spec)
    if why:
        pytest.skip(f"{op}: {why}")
    if adapter.implements(spec) is False:
        pytest.skip(f"{adapter.name} declares no {op} of its own (implements() is False)")
    return spec


def test_probe_answers_and_explains_unavailability(adapter):
    found = adapter.probe()
    assert isinstance(found.available, bool)
    if not found.available:
        assert found.reason.strip(), "an unavailable backend must say why"


def test_versions_are_strings_and_name_torch(available):
    versions = available.versions()
    assert versions and all(isinstance(k, str) and isinstance(v, str) for k, v in versions.items())
    assert "torch" in versions


def test_declared_dtypes_are_known_and_honoured(available):
    declared = available.supported_dtypes()
    assert declared and set(declared) <= set(DTYPES)
    from portability.catalog import load_catalog

    spec = load_catalog()["add"]
    case = spec.cases[0]
    for dtype in ("fp32", "fp16", "bf16"):
        if dtype not in declared:
            continue
        (args, kwargs), want = reference("add", case.name, dtype)
        with available.route(spec) as impl:
            got = impl(*_to(args, available.device), **_to(kwargs, available.device))
            available.synchronize()
        assert got.dtype == DTYPES[dtype], f"{dtype} input came back as {got.dtype}"
        tol = Tolerance(*DEFAULT_TOLERANCE[dtype])
        check = check_output(spec, case, got, want, (args, kwargs), tol)
        assert check.ok, f"add at {dtype}: {check.detail}"


def test_synchronize_really_waits(available):
    x = torch.rand(1024, 1024, device=available.device)
    available.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        x = torch.tanh(x @ x / 1024)
    available.synchronize()
    waited = time.perf_counter() - start
    # After synchronize the result must be complete: reading it costs no further device time.
    start = time.perf_counter()
    x.sum().item()
    read = time.perf_counter() - start
    assert waited > 0 and read < max(waited, 0.05), "synchronize returned before the queued work finished"


def test_timings_are_positive_and_repeatable(available):
    x = torch.rand(512, 2048, device=available.device)
    available.time(lambda: torch.softmax(x, -1), warmup=10, reps=5)  # first-touch effects stay out
    ratios = []
    # Two timers of the same work, interleaved over rounds so a burst of load from elsewhere on a shared
    # machine hits both; the best of three attempts must agree within 4x.
    for _ in range(3):
        first, second = [], []
        for _ in range(5):
            first.append(available.time(lambda: torch.softmax(x, -1), warmup=1, reps=5))
            second.append(available.time(lambda: torch.softmax(x, -1), warmup=1, reps=5))
        for t in first + second:
            assert t.median_ms > 0 and t.p10_ms <= t.median_ms <= t.p90_ms
        a = sorted(t.median_ms for t in first)[2]
        b = sorted(t.median_ms for t in second)[2]
        ratios.append(max(a, b) / min(a, b))
        if ratios[-1] < 4:
            break
    assert min(ratios) < 4, f"two medians of the same work differ {min(ratios):.1f}x"


@pytest.mark.parametrize("op", CHECK_OPS)
def test_routing_reaches_the_backends_kernels(available, op, request: pytest.FixtureRequest):
    spec = _own_or_skip(available, op)
    before = available.kernel_launches()
    if before is None:
        if available.is_baseline:
            return  # native torch is the baseline's own code by definition
        why = f"{available.name} reports no kernel launch count, so routing cannot be verified"
        if request.config.getoption("--allow-unverified-routing"):
            pytest.skip(why + " (--allow-unverified-routing)")
        pytest.fail(why + ": implement kernel_launches() (or pass --allow-unverified-routing)")
    (args, kwargs), _ = reference(op, spec.cases[0].name, "fp32")
    with available.route(spec) as impl, available.counting_launches():
        impl(*_to(args, available.device), **_to(kwargs, available.device))
        available.synchronize()
    assert available.kernel_launches() > before, f"{op} ran, but none of {available.name}'s kernels did"


@pytest.mark.parametrize("op", CHECK_OPS)
def test_own_operators_give_right_results(available, op):
    """Every small case of the operator at fp32 through the real harness: a wrong kernel fails here."""
    spec = _own_or_skip(available, op)
    if "fp32" not in available.supported_dtypes():
        pytest.skip(f"{available.name} declares no fp32 support")
    atol, rtol = DEFAULT_TOLERANCE["fp32"]
    cases = [c for c in spec.cases if sum(t.numel() for t in c.tensors()) <= MAX_CHECK_NUMEL]
    wrong = []
    for case in cases:
        req = CaseRequest(
            id=f"conformance::{op}/{case.name}",
            cell=f"{available.name}@{available.device}",
            backend=available.name,
            device=available.device,
            op=op,
            case=case.name,
            dtype="fp32",
            atol=spec.atol.get("fp32", atol),
            rtol=spec.rtol.get("fp32", rtol),
            warmup=0,
            repetitions=1,
            budget_s=0.05,
        )
        row = run_case(req, available, None)
        if row["status"] != "pass":
            wrong.append(f"{case.name}: {row['status']}: {row['reason']}")
    assert not wrong, f"{len(wrong)} of {len(cases)} {op} case(s) did not pass: " + " | ".join(wrong)


def test_some_operator_is_its_own(available):
    """Routing and results are checked on CHECK_OPS: an adapter that declares none of them as its own
    (implements() False for all) has had nothing checked."""
    from portability.catalog import load_catalog

    catalog = load_catalog()
    own = [op for op in CHECK_OPS if op in catalog and available.implements(catalog[op]) is not False]
    assert own, (
        f"{available.name} declares none of {', '.join(CHECK_OPS)} as its own (implements() is False): "
        "routing and results could not be checked"
    )
