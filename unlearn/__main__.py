"""Allow `python -m unlearn`."""

from unlearn.cli import main

raise SystemExit(main())
