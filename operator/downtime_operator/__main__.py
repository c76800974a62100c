"""``python -m downtime_operator`` and the ``downtime-operator`` script (see ``cli``)."""

from __future__ import annotations

import sys

from downtime_operator.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
