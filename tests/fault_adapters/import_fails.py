"""An adapter module that cannot be imported (its vendor runtime is missing)."""

raise ImportError("planted: libmychip_runtime.so: cannot open shared object file")
