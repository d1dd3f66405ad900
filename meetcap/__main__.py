from meetcap.cli.main import main

raise SystemExit(main())
