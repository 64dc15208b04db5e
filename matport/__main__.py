"""``python -m matport`` is the ``matport`` command."""

import sys

from matport.cli import main

sys.exit(main())
