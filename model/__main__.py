"""`python -m model upscale|train|evaluate ...` (see model/cli.py)."""
import sys

from model.cli import main

sys.exit(main())
