"""Run the ``jbp`` command as ``python -m jbp``."""

import sys

from jbp.cli import main

sys.exit(main())
