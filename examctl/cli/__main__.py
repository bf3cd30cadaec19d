"""`python -m examctl.cli`, the same as the `examctl` script (as when the CLI was one module)."""

from examctl.cli import main

# Guarded, as cli.py's was: importing this module (tests import every module) runs nothing.
if __name__ == "__main__":
    main()
