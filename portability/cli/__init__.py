"""`portability` command line (the `portability` script and `python -m portability`): `main` parses the
arguments (`cli.parser`), runs the chosen subcommand (`cli.run`, `cli.commands`) and turns a matrix or usage
error into one line on stderr and exit code 2, an interrupt into a hint to resume and exit code 130."""

from __future__ import annotations

import sys

from portability.cli.common import EXIT_USAGE, UsageError
from portability.cli.parser import build_parser
from portability.matrix.config import ConfigError
from portability.scorecard.safe_text import visible


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        sys.stderr.write(f"{visible(exc)}\n")
        return EXIT_USAGE
    except UsageError as exc:  # what the user typed is echoed: one line, without terminal codes
        sys.stderr.write(f"portability: {visible(exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("portability: interrupted; finish with `portability run --resume --out DIR`\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
