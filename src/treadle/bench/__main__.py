"""``python -m treadle.bench``: the same as ``treadle bench``."""

from .cli import main

raise SystemExit(main(prog="python -m treadle.bench"))
