"""Every FlagGems-registered aten overload: specs derived from PyTorch's OpInfo samples (opinfo.py) and
hand-written ones for what OpInfo does not reach."""
