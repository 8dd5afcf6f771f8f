"""Test-only operators for tests/test_verdicts.py (loaded through $PORTABILITY_SPECS): cheap cases of the
ops tests/fault_adapters/harness_ops.py overrides."""

import torch

from portability.spec import Case, OpSpec, T

SPECS = [
    OpSpec(
        "v_add", lambda x, y: torch.add(x, y), cases=[Case("64x65", T(64, 65), T(64, 65))], dtypes=("fp32",)
    ),
    OpSpec("v_abs", lambda x: torch.abs(x), cases=[Case("64x65", T(64, 65))], dtypes=("fp32",)),
]
