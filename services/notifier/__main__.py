"""`notifier`: the customer-notification service (issue #5; not built yet)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("notifier: not implemented yet (tracked in issue #5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
