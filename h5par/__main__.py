"""``python -m h5par`` (and ``python -m mpi4py -m h5par`` for abort-safe batch runs)."""

import sys

from h5par.app.cli import main

sys.exit(main())
