"""`python -m edgegen.cli ...` (torchrun and the tests use it): the `edgegen` command."""

from edgegen.cli import main

main()
