"""`python -m sameprocess`: the same command as the `sameprocess` script."""
import sys

from ._cli import main

sys.exit(main())
