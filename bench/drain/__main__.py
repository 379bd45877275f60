import sys

from bench.drain.run import main

sys.exit(main())
