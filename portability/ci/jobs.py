"""The CI jobs of a matrix: one per backend@device cell, with the runner label its device needs and the
nox session that runs it (`portability ci-matrix`, read by GitHub Actions' `fromJson`)."""

from __future__ import annotations

from portability.matrix.config import MatrixConfig

CPU_RUNNER = "ubuntu-latest"


def session_name(backend: str, device: str) -> str:
    """The nox session of one cell, named as noxfile.py's `session_name` names it (a pinned device
    `cuda:1` is `matrix-<backend>-cuda_1`: session names carry no `:`)."""
    return f"matrix-{backend}-{device.replace(':', '_')}"


def parse_runner_labels(text: str) -> dict[str, str]:
    """`cuda=hopper,npu=ascend` -> {"cuda": "hopper", "npu": "ascend"}; ValueError names a bad entry."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        device_type, sep, label = item.partition("=")
        if not sep or not device_type.strip() or not label.strip():
            raise ValueError(f"{item!r}, expected DEVICE_TYPE=LABEL (e.g. cuda=hopper)")
        labels[device_type.strip()] = label.strip()
    return labels


def ci_matrix(
    config: MatrixConfig, cells: list[str] | None = None, runners: dict[str, str] | None = None
) -> dict[str, list[dict[str, str]]]:
    """`{"include": [{"cell", "backend", "device", "runner", "session"}...]}` for the matrix's cells (or
    only `cells`, backend@device ids; ValueError names one the matrix does not declare). `runner` is the
    runner label for the device type: `runners[type]`, else `portability-<type>` (CPU: GitHub's own)."""
    declared = {
        f"{backend.name}@{device}": (backend.name, device)
        for backend in config.backends.values()
        for device in backend.devices
    }
    unknown = [c for c in cells or [] if c not in declared]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not a cell of {config.path}, expected one of {', '.join(declared)}"
        )
    include = []
    for cell, (backend, device) in declared.items():
        if cells and cell not in cells:
            continue
        device_type = device.split(":", 1)[0]
        default = CPU_RUNNER if device_type == "cpu" else f"portability-{device_type}"
        include.append(
            {
                "cell": cell,
                "backend": backend,
                "device": device,
                "runner": (runners or {}).get(device_type, default),
                "session": session_name(backend, device),
            }
        )
    return {"include": include}
