from bench.pair.run import main

raise SystemExit(main())
