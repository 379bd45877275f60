from bench.heartbeat.run import main

raise SystemExit(main())
