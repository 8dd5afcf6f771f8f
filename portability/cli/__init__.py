"""`portability` command line (the `portability` script and `python -m portability`): `main` parses the
arguments (`cli.parser`), runs the chosen subcommand (`cli.run`, `cli.commands`) and turns a matrix, usage
or run-file error into one line on stderr and exit code 2, a result that cannot be written (out of space,
read-only) into one `infra` line and exit code 75, an interrupt into a hint to resume and exit code 130
(`portability run` itself handles SIGTERM/SIGINT/SIGHUP: run/proctree.py)."""

from __future__ import annotations

import errno
import sys

from portability.cli.common import EXIT_USAGE, UsageError
from portability.cli.parser import build_parser
from portability.matrix.config import ConfigError
from portability.results.rundir import RunFileError
from portability.results.store import ResultsUnwritable
from portability.scorecard.safe_text import visible

# The machine, not the input: a result or output file could not be written (out of space, read-only).
# EX_TEMPFAIL: finished rows are kept, `portability run --resume` finishes the run once there is room.
EXIT_INFRA = 75
_UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        sys.stderr.write(f"{visible(exc)}\n")
        return EXIT_USAGE
    except (UsageError, RunFileError) as exc:
        sys.stderr.write(f"portability: {visible(exc)}\n")  # one line, no terminal codes
        return EXIT_USAGE
    except ResultsUnwritable as exc:
        sys.stderr.write(f"portability: infra: {exc}; every finished row is kept, {_RESUME_HINT}\n")
        return EXIT_INFRA
    except OSError as exc:
        if exc.errno not in _UNWRITABLE:
            raise
        sys.stderr.write(f"portability: infra: {exc.filename or ''}: {exc.strerror}; {_RESUME_HINT}\n")
        return EXIT_INFRA
    except KeyboardInterrupt:
        sys.stderr.write("portability: interrupted; finish with `portability run --resume --out DIR`\n")
        return 130


_RESUME_HINT = "free space (or make it writable) and finish with `portability run --resume --out DIR`"


if __name__ == "__main__":
    sys.exit(main())
