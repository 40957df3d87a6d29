"""`python -m edgegen.corpus render|verify`: the same as `edgegen corpus render|verify` (edgegen/cli/corpus.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run `edgegen corpus ARGV`; returns the exit status (bad input: one `edgegen: error:` line, 2)."""
    from edgegen.cli import main as edgegen

    try:
        edgegen.main(args=["corpus", *(sys.argv[1:] if argv is None else argv)], prog_name="edgegen")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
