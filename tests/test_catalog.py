"""The operator catalog: well-formed specs, real FlagGems names, and eager torch passing its own checks."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

from portability.catalog import load_catalog
from portability.config import Tolerance
from portability.execute import check_output, reference
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
