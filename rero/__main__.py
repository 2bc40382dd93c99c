"""``python -m rero`` is the ``rero`` console script."""

from rero.cli import main

raise SystemExit(main())
