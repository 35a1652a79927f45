"""`python -m ide_backend` runs the command line."""

import sys

from .cli import main

sys.exit(main())
