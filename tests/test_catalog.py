"""The operator catalog: well-formed specs, real FlagGems names, and eager torch passing its own checks."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from portability.catalog import load_catalog
from portability.matrix.config import Tolerance
from portability.run.case import reference
from portability.run.judge import check_output
from portability.spec import DEFAULT_TOLERANCE, DTYPES

CATALOG = load_catalog()
QWEN3_PATH = {
    "mm",
    "addmm",
    "bmm",
    "embedding",
    "rms_norm",
    "silu",
    "mul",
    "add",
    "softmax",
    "log_softmax",
    "rotary_embedding",
    "cat",
    "index_select",
    "gather",
    "argmax",
    "topk",
    "sort",
    "cumsum",
    "exp",
    "where",
    "masked_fill",
    "to_fp32",
    "silu_and_mul",
    "scaled_dot_product_attention",
}


def flag_gems_function_names() -> set[str]:
    """Function names FlagGems 5.0.2 registers (its _FULL_CONFIG), read from source: importing flag_gems
    needs a supported device, which a CPU host does not have."""
    spec = importlib.util.find_spec("flag_gems")
    if spec is None or spec.origin is None:
        pytest.skip("flag_gems is not installed")
    tree = ast.parse(Path(spec.origin).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_FULL_CONFIG":
            for entry in node.value.elts:
                fn = entry.elts[1]
                if isinstance(fn, ast.Name):
                    names.add(fn.id)
    return names


def test_catalog_covers_the_qwen3_path_with_well_formed_specs():
    assert len(CATALOG) >= 40
    assert QWEN3_PATH <= set(CATALOG)
    for spec in CATALOG.values():
        assert spec.cases, spec.name
        assert len({c.name for c in spec.cases}) == len(spec.cases), spec.name
        assert set(spec.dtypes) <= set(DTYPES), spec.name
    qwen3 = [s for s in CATALOG.values() if "qwen3" in s.tags]
    assert len(qwen3) >= 40


def test_every_flaggems_name_is_a_function_flag_gems_registers():
    registered = flag_gems_function_names()
    for spec in CATALOG.values():
        unknown = set(spec.flaggems) - registered
        assert not unknown, f"{spec.name}: {sorted(unknown)} are not FlagGems registrations"


SMOKE = [(s.name, c.name) for s in CATALOG.values() if "smoke" in s.tags for c in s.cases]


@pytest.mark.parametrize(("op", "case"), SMOKE)
def test_eager_torch_passes_its_own_reference_at_fp32(op, case):
    spec = CATALOG[op]
    dtype = "fp32" if "fp32" in spec.dtypes else spec.dtypes[0]
    (args, kwargs), want = reference(op, case, dtype)
    got = spec.fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
    if spec.mutates:
        got = (got, got)
    atol = spec.atol.get(dtype, DEFAULT_TOLERANCE[dtype][0])
    rtol = spec.rtol.get(dtype, DEFAULT_TOLERANCE[dtype][1])
    check = check_output(spec, spec.case(case), got, want, (args, kwargs), Tolerance(atol, rtol))
    assert check.ok, check.detail


def test_generated_and_hand_written_aten_specs_cover_every_operator_class():
    aten = [s for s in CATALOG.values() if "aten" in s.tags]
    assert len(aten) >= 400
    kinds = {s.op_kind for s in aten}
    assert kinds == {"functional", "inplace", "out", "backward", "random"}
    for s in aten:
        assert s.flaggems, s.name  # routed: flaggems@device switches exactly these kernels on
        assert s.kind != "random" or s.distribution is not None, s.name
        assert len(s.cases) <= 3, s.name  # breadth stays cheap


def test_sampled_cases_are_seeded_by_the_case_id():
    from portability.spec import make_inputs

    spec = CATALOG["aten.addcmul"]
    case = spec.cases[0]
    (a1, _), (a2, _) = make_inputs(spec, case, "fp32"), make_inputs(spec, case, "fp32")
    assert all(torch.equal(x, y) for x, y in zip(a1, a2, strict=True) if isinstance(x, torch.Tensor))
    (h, _) = make_inputs(spec, case, "bf16")
    assert h[0].dtype == torch.bfloat16 and a1[0].dtype == torch.float32
    assert case.input_bytes("fp32") == 2 * case.input_bytes("bf16") > 0


# one overload per operator class and compare mode, end to end through the command line
ATEN_SAMPLE = [
    "aten.add.Tensor",  # functional, OpInfo samples
    "aten.add_.Tensor",  # in-place
    "aten.cumsum.out",  # out=
    "aten.native_layer_norm_backward",  # backward, through autograd
    "aten.randperm",  # random
    "aten.normal_",
    "aten.topk",  # ties: values and validity of indices
    "aten._unique2",  # order-free
    "aten.arange",  # factory, built on the device under test
    "aten.native_batch_norm",  # writes its running statistics, and only those
    "aten.divide.Scalar",  # composite overload, hand-written
]


def test_a_sample_of_aten_specs_passes_on_eager_torch(tmp_path, cli):
    out = tmp_path / "run"
    ops = ",".join(ATEN_SAMPLE)
    proc = cli(
        "run", "--backends", "torch", "--devices", "cpu", "--dtypes", "fp32", "--ops", ops, "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "op"]
    assert {r["op"] for r in rows} == set(ATEN_SAMPLE)
    assert all(r["status"] == "pass" for r in rows), [r for r in rows if r["status"] != "pass"]
