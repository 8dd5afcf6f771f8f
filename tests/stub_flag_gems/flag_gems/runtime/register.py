"""The stand-in's registrar: FlagGems' Register interface (register_impl, get_all_keys...), a vendor
"sunrise" that declares `abs` unused."""

VENDOR_UNUSED = ("abs",)


class Register:
    def __init__(self, config, user_include_ops=None, user_exclude_ops=None, cpp_patched_ops=None, lib=None):
        self.all_ops: list[str] = []
        self.all_keys: list[str] = []
        exclude = set(user_exclude_ops or ()) | set(VENDOR_UNUSED)
        for key, fn in config:
            if fn.__name__ not in exclude:
                self.register_impl(key, fn)

    def register_impl(self, key, fn):
        raise RuntimeError("the stand-in never registers kernels")

    def get_all_keys(self):
        return self.all_keys

    def get_all_ops(self):
        return self.all_ops

    def get_vendor_name(self):
        return "sunrise"
