"""Hostile matrix files: each mistake ends in one `FILE:LINE: what, expected what` line and exit code 2."""

from __future__ import annotations

import pytest

from portability.cli import main

GOOD_BACKEND = "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
BOMB = (
    "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b]\n"
)

# (name, file content, expected line, expected words in the message)
CASES: list[tuple[str, str | bytes, int, str]] = [
    ("empty file", "", 1, "the file is empty, expected a mapping"),
    ("only a comment", "# nothing here\n", 1, "the file is empty"),
    ("a list, not a mapping", "- torch\n- flaggems\n", 1, "the file is a list, expected a mapping"),
    ("a bare string", "hello\n", 1, "the file is the string 'hello', expected a mapping"),
    ("alias bomb", BOMB, 2, "anchor/alias"),
    ("invalid YAML", "backends: {torch: [cpu\n", 2, "not valid YAML"),
    (
        "non-UTF-8 bytes",
        b"version: 1\nbackends:\n  torch: {adapter: \xff\xfe}\n",
        3,
        "is not UTF-8, expected UTF-8",
    ),
    ("unknown top-level key", "version: 1\nbackend:\n  torch: {}\n", 2, "unknown key 'backend'"),
    ("no backends", "version: 1\n", 1, "no 'backends' key"),
    ("empty backends", "backends: {}\n", 1, "no backend declared, expected at least one backend"),
    ("wrong version", "version: 2\n" + GOOD_BACKEND, 1, "version is 2, expected 1"),
    ("unknown adapter", "backends:\n  tpu:\n    adapter: tpu_magic\n", 3, "unknown adapter 'tpu_magic'"),
    ("unknown backend key", "backends:\n  torch:\n    adaptor: torch\n", 3, "unknown key 'adaptor'"),
    ("duplicate backend", "backends:\n  torch: {}\n  torch: {}\n", 3, "duplicate key 'torch'"),
    ("duplicate cell", "backends:\n  torch:\n    devices: [cpu, cuda, cpu]\n", 3, "duplicate cell torch@cpu"),
    ("devices not a list", "backends:\n  torch:\n    devices: 3\n", 3, "is the integer 3, expected a list"),
    ("unknown device", "backends:\n  torch:\n    devices: [cpu, quantum]\n", 3, "unknown device 'quantum'"),
    ("bad device index", "backends:\n  torch:\n    devices: ['cuda:x']\n", 3, "unknown device 'cuda:x'"),
    ("unknown dtype", "backends:\n  torch:\n    dtypes: [fp32, fp8]\n", 3, "unknown dtype 'fp8'"),
    (
        "env not a string",
        "backends:\n  torch:\n    env: {A: {b: 1}}\n",
        3,
        "env A is a mapping, expected a string",
    ),
    ("odd backend name", "backends:\n  'my chip':\n    adapter: torch\n", 2, "is not a simple name"),
    (
        "unknown operator",
        GOOD_BACKEND + "operators:\n  include: [softmax, conv9d]\n",
        4,
        "unknown operator 'conv9d'",
    ),
    ("unknown tag", GOOD_BACKEND + "operators:\n  tags: [qwen7]\n", 4, "unknown tag 'qwen7'"),
    (
        "negative repetitions",
        GOOD_BACKEND + "perf:\n  repetitions: -5\n",
        4,
        "repetitions is -5, expected a number >= 1",
    ),
    (
        "repetitions a string",
        GOOD_BACKEND + "perf:\n  repetitions: many\n",
        4,
        "repetitions is the string 'many'",
    ),
    ("zero timeout", GOOD_BACKEND + "perf:\n  timeout_s: 0\n", 4, "timeout_s is 0, expected a number > 0"),
    ("NaN budget", GOOD_BACKEND + "perf:\n  budget_s: .nan\n", 4, "budget_s is nan"),
    ("zero workers", GOOD_BACKEND + "perf:\n  workers: 0\n", 4, "workers is 0, expected a number >= 1"),
    (
        "tolerance not a number",
        GOOD_BACKEND + "tolerances:\n  dtypes:\n    bf16: {atol: tight}\n",
        5,
        "atol is the string 'tight', expected a number",
    ),
    (
        "negative tolerance",
        GOOD_BACKEND + "tolerances:\n  dtypes:\n    bf16: {rtol: -1}\n",
        5,
        "rtol is -1, expected a number >= 0",
    ),
    (
        "tolerance for unknown backend",
        GOOD_BACKEND + "tolerances:\n  backends:\n    gems: {fp32: {atol: 1}}\n",
        5,
        "unknown key 'gems' in tolerances.backends, expected one of torch",
    ),
    (
        "tolerance for unknown dtype",
        GOOD_BACKEND + "tolerances:\n  devices:\n    cuda: {fp4: {atol: 1}}\n",
        5,
        "unknown key 'fp4'",
    ),
]


@pytest.mark.parametrize(("content", "line", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_matrix_gives_one_line_with_file_line_and_exit_2(tmp_path, capsys, content, line, words):
    path = tmp_path / "matrix.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert main(["list", "--matrix", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"{path}:{line}: "), err
    assert words in err, err
    assert ", expected " in err, err


def test_missing_file_and_bad_flags_also_exit_2_without_traceback(tmp_path, cli):
    proc = cli("list", "--matrix", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"{tmp_path / 'nope.yaml'}:1: cannot read the file (No such file or directory), "
        "expected a readable matrix file"
    )
    proc = cli("run", "--ops", "softmax,conv9d", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--ops: unknown value 'conv9d'" in proc.stderr
    proc = cli("run", "--resume", "--out", str(tmp_path / "never-ran"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_huge_file_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "matrix.yaml"
    path.write_text(GOOD_BACKEND + "# " + "x" * 1_100_000 + "\n")
    assert main(["list", "--matrix", str(path)]) == 2
    assert "bytes, expected at most 1000000" in capsys.readouterr().err
