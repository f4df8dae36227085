"""`python -m ggmlpy ...` is the `ggmlpy` command (for shells whose PATH lacks pip's scripts)."""
import sys

from .cli import main

sys.exit(main())
