"""The 5.3 stand-in's registrar: GeneralOpRegistrar's interface, a vendor "sunrise" that declares `abs`
unused, entries with a condition registered only where it holds."""

VENDOR_UNUSED = ("abs",)


class GeneralOpRegistrar:
    def __init__(self, config, user_include_ops=None, user_exclude_ops=None, cpp_patched_ops=None, lib=None):
        self.all_ops: list[str] = []
        self.all_keys: list[str] = []
        exclude = set(user_exclude_ops or ()) | set(VENDOR_UNUSED)
        for key, fn, *condition in config:
            if fn.__name__ not in exclude and (not condition or condition[0]()):
                self.register_impl(key, fn, ())

    def register_impl(self, key, fn, extra_dispatch_keys=()):
        raise RuntimeError("the stand-in never registers kernels")

    def get_all_keys(self):
        return self.all_keys

    def get_all_ops(self):
        return self.all_ops
