from meetcap.server.cli import main

raise SystemExit(main())
