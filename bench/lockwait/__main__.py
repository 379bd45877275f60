from bench.lockwait.run import main

raise SystemExit(main())
