"""The Qwen3-4B serving path: models shipped as config, stand-in weights, serving settings.

Models live in `models/<name>/config.json` (the exact Qwen3-4B architecture, and `qwen3-tiny`, the same
architecture scaled down for CPU CI). Nothing is downloaded: throughput runs use the engine's dummy
weights, the accuracy gate uses a seeded synthetic checkpoint written once (`checkpoint.py`).
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"


def model_config_dir(name: str) -> Path:
    path = MODELS_DIR / name
    if not (path / "config.json").exists():
        known = ", ".join(sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").exists()))
        raise KeyError(f"unknown model {name!r}, expected one of {known} or a directory with real weights")
    return path
