"""`python -m examctl`, the same as the `examctl` script."""

from examctl.cli import main

main()
