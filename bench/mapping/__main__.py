"""`python -m bench.mapping`: see run.py."""

import sys

from bench.mapping.run import main

sys.exit(main())
