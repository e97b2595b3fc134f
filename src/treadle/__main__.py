"""``python -m treadle``: the command line (see ``treadle --help``)."""

from ._cli import main

raise SystemExit(main())
