import sys

from bench.stockburst.run import main

sys.exit(main())
