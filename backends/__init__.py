"""Backend adapters, one per file. Installed as `portability.backends` (see pyproject.toml)."""
