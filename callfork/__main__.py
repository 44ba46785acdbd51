"""`python -m callfork`: the command line (callfork/cli.py)."""
import sys

from callfork.cli import main

sys.exit(main())
