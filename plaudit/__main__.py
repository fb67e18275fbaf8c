from plaudit.cli import main

raise SystemExit(main())
