"""The matrix file: line-numbered YAML (yaml_lines.py), its schema and tolerances (config.py)."""
