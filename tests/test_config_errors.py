"""Hostile matrix files: each mistake ends in one `FILE:LINE: what, expected what` line and exit code 2,
through the real command line in a subprocess, never a traceback."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_cli

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
    (
        "FlagGems source of no known form",
        "backends:\n  flaggems:\n    options:\n      source: latest-please\n",
        4,
        "source is the string 'latest-please', expected pypi, installed, a version",
    ),
    (
        "unknown flaggems option",
        "backends:\n  flaggems:\n    options:\n      sauce: pypi\n",
        4,
        "unknown key 'sauce' in backends.flaggems.options, expected one of source, vllm_fl",
    ),
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
        "repetitions is -5, expected a finite number >= 1",
    ),
    (
        "repetitions a string",
        GOOD_BACKEND + "perf:\n  repetitions: many\n",
        4,
        "repetitions is the string 'many'",
    ),
    (
        "zero timeout",
        GOOD_BACKEND + "perf:\n  timeout_s: 0\n",
        4,
        "timeout_s is 0, expected a finite number > 0",
    ),
    ("NaN budget", GOOD_BACKEND + "perf:\n  budget_s: .nan\n", 4, "budget_s is nan"),
    (
        "zero workers",
        GOOD_BACKEND + "perf:\n  workers: 0\n",
        4,
        "workers is 0, expected a finite number >= 1",
    ),
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
        "rtol is -1, expected a finite number >= 0",
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
    (
        "infinite timeout",
        GOOD_BACKEND + "perf:\n  timeout_s: .inf\n",
        4,
        "timeout_s is inf, expected a finite",
    ),
    (
        "negative warmup",
        GOOD_BACKEND + "perf:\n  warmup: -1\n",
        4,
        "warmup is -1, expected a finite number >= 0",
    ),
    ("unknown perf key", GOOD_BACKEND + "perf:\n  repeats: 5\n", 4, "unknown key 'repeats' in perf"),
    (
        "perf cache unknown",
        GOOD_BACKEND + "perf:\n  cache: lukewarm\n",
        4,
        "cache is 'lukewarm', expected one of auto, cold, warm",
    ),
    ("perf repeat zero", GOOD_BACKEND + "perf:\n  repeat: 0\n", 4, "repeat is 0, expected a finite number"),
    ("workers a word", GOOD_BACKEND + "perf:\n  workers: many\n", 4, "workers is the string 'many'"),
    ("dtype a number", "backends:\n  torch:\n    dtypes: [16]\n", 3, "dtype 16 is the integer 16"),
    (
        "options not a mapping",
        "backends:\n  torch:\n    options: [a]\n",
        3,
        "options is a list, expected a mapping",
    ),
    (
        "include not a list",
        GOOD_BACKEND + "operators:\n  include: 5\n",
        4,
        "is the integer 5, expected a list",
    ),
    ("a list as a key", "backends:\n  ? [a, b]\n  : {}\n", 2, "is not a plain value, expected a name"),
    ("tab indentation", "backends:\n\ttorch: {}\n", 2, "not valid YAML"),
    ("NUL byte", "version: 1\nbackends: {torch: {}}\x00\n", 2, "character #x0000 is not allowed"),
    ("terminal escape", 'version: 1\nbackends: {torch: {adapter: "\x1b[2J"}}\n', 2, "character #x001b"),
    (
        "python tag on a scalar",
        "version: !!python/name:os.system\n" + GOOD_BACKEND,
        1,
        "YAML tag '!!python/name:os.system' is not allowed",
    ),
    (
        "python tag on a list",
        'backends:\n  torch:\n    devices: !!python/object/apply:os.system ["touch /tmp/pwned"]\n',
        3,
        "is not allowed, expected plain values",
    ),
    ("a set", "backends:\n  torch: {devices: !!set {cpu: null}}\n", 2, "YAML tag '!!set' is not allowed"),
    ("nesting 5000 deep", "backends: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested too deeply"),
    ("nesting 40 deep", "backends: " + "[" * 40 + "]" * 40 + "\n", 1, "nested more than 32 levels deep"),
]


# Through `python -m portability list` in a subprocess each (a few at a time): the variants the issue names.
# Every variant above also runs in-process below (a subprocess costs ~2 s of torch import).
THROUGH_THE_CLI = (
    "empty file",
    "a list, not a mapping",
    "alias bomb",
    "invalid YAML",
    "non-UTF-8 bytes",
    "NUL byte",
    "unknown top-level key",
    "unknown adapter",
    "unknown backend key",
    "duplicate backend",
    "duplicate cell",
    "devices not a list",
    "unknown device",
    "unknown dtype",
    "unknown operator",
    "negative repetitions",
    "repetitions a string",
    "infinite timeout",
    "tolerance not a number",
    "tolerance for unknown backend",
    "python tag on a list",
    "nesting 5000 deep",
)


def _write(root, i: int, content: str | bytes):
    path = root / f"m{i}" / "matrix.yaml"
    path.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    chosen = [c for c in CASES if c[0] in THROUGH_THE_CLI]
    paths = [_write(root, i, c[1]) for i, c in enumerate(chosen)]
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        procs = list(pool.map(lambda p: run_cli("list", "--matrix", str(p), timeout=120), paths))
    return {case[0]: (path, proc) for case, path, proc in zip(chosen, paths, procs, strict=True)}


def _check(err: str, path, line: int, words: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"{path}:{line}: "), err
    assert words in err, err
    assert ", expected " in err, err


CASE_PARAMS = [pytest.param(*c, id=c[0]) for c in CASES]


@pytest.mark.parametrize(("name", "content", "line", "words"), CASE_PARAMS)
def test_hostile_matrix_in_process(tmp_path, capsys, name, content, line, words):
    path = _write(tmp_path, 0, content)
    assert main(["list", "--matrix", str(path)]) == 2
    _check(capsys.readouterr().err, path, line, words)


@pytest.mark.parametrize(
    ("name", "content", "line", "words"), [p for p in CASE_PARAMS if p.id in THROUGH_THE_CLI]
)
def test_hostile_matrix_through_the_cli_exits_2_with_one_line(outcomes, name, content, line, words):
    path, proc = outcomes[name]
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "", proc.stdout
    _check(proc.stderr, path, line, words)


def test_at_least_20_variants_go_through_the_cli():
    assert len(set(THROUGH_THE_CLI) & {c[0] for c in CASES}) == len(THROUGH_THE_CLI) >= 20


def test_a_bad_extra_spec_module_is_one_line_too(tmp_path):
    proc = run_cli("list", env={"PORTABILITY_SPECS": str(tmp_path / "nope.py")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("$PORTABILITY_SPECS:1: cannot load") and proc.stderr.count("\n") == 1


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
    assert "--ops: unknown operator 'conv9d', expected one of the " in proc.stderr
    proc = cli("run", "--resume", "--out", str(tmp_path / "never-ran"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_a_huge_file_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "matrix.yaml"
    path.write_text(GOOD_BACKEND + "# " + "x" * 1_100_000 + "\n")
    assert main(["list", "--matrix", str(path)]) == 2
    assert "bytes, expected at most 1000000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--engines", "vllm,trt"), "--engines: unknown engine 'trt', expected one of vllm, vllm-fl, hf"),
        (("--model", "qwen9"), "--model: unknown model 'qwen9', expected one of qwen3-4b, qwen3-tiny"),
        (("--serving-only", "--no-serving"), "--no-serving and --serving-only exclude each other"),
    ],
)
def test_serving_flags_are_checked_like_the_serving_block(tmp_path, cli, flags, words):
    proc = cli("run", *flags, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before anything ran
