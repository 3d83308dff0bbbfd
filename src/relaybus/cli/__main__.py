from .parser import main

raise SystemExit(main())
