"""The Qwen3-4B path: operator families at Qwen3-4B's shapes (model dimensions in _model.py)."""
