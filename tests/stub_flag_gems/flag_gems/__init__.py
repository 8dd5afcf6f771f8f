"""A stand-in for flag_gems on a vendor that initialises (tests/test_coverage.py puts its parent folder
first on PYTHONPATH): the same `_FULL_CONFIG` table shape and `enable(registrar=...)` entry point as
flag-gems 5.0.2, with a vendor whose own exclusion list drops `abs`. Only the interface coverage reads."""

from flag_gems.runtime.register import Register


def add(*args):
    raise NotImplementedError


def abs(*args):  # FlagGems' own name for it
    raise NotImplementedError


def mm(*args):
    raise NotImplementedError


def topk(*args):
    raise NotImplementedError


_FULL_CONFIG = (
    ("add.Tensor", add),
    ("abs", abs),
    ("mm", mm),
    ("topk", topk),
)

current_work_registrar = None


def enable(registrar=Register, unused=None):
    global current_work_registrar
    current_work_registrar = registrar(_FULL_CONFIG, user_exclude_ops=list(unused or []))
