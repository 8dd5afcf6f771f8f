"""A stand-in for flag_gems 5.3.x on a vendor that initialises (tests put this folder's parent first on
PYTHONPATH): 5.3's shape of the interface the matrix probes. Its registrar is
`flag_gems.runtime.op_registrar.GeneralOpRegistrar` (5.0.2's `flag_gems.runtime.register` is gone), whose
`register_impl` takes extra dispatch keys; table entries may carry a condition; the table names an
import alias (`range_op`) for a function whose own name is `range`; registrations are read back through
the public `all_registered_keys()`. Its vendor "sunrise" declares `abs` unused."""

from flag_gems.ops import range as range_op
from flag_gems.runtime.op_registrar import GeneralOpRegistrar


def add(*args):
    raise NotImplementedError


def abs(*args):  # FlagGems' own name for it
    raise NotImplementedError


def mm(*args):
    raise NotImplementedError


__version__ = "5.3.99"
device = "sunrise"
vendor_name = "sunrise"
registrar = GeneralOpRegistrar
current_work_registrar = None

_FULL_CONFIG = (
    ("add.Tensor", add),
    ("abs", abs),
    ("mm", mm, lambda: True),
    ("arange.start_step", range_op, lambda: False),  # a condition that does not hold: not registered live
)


def enable(lib=None, unused=None, registrar=registrar, record=False, once=False, path=None):
    global current_work_registrar
    current_work_registrar = registrar(_FULL_CONFIG, user_include_ops=[], user_exclude_ops=list(unused or []))


def only_enable(lib=None, include=None, registrar=registrar, record=False, once=False, path=None):
    raise NotImplementedError("the stand-in only lists its registry")


class use_gems:
    def __init__(self, exclude=None, include=None, record=False, once=False, path=None):
        raise NotImplementedError("the stand-in only lists its registry")


def all_registered_ops():
    return current_work_registrar.get_all_ops()


def all_registered_keys():
    return current_work_registrar.get_all_keys()
