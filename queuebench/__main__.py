from queuebench.cli import main

raise SystemExit(main())
