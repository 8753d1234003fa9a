"""Runs tests/torch/ with pytest and closes with `N passed, N failed` (scripts/test-torch)."""

import sys
from pathlib import Path

import pytest


class _Count:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.failed:
            self.failed += 1


def main() -> int:
    count = _Count()
    here = Path(__file__).resolve().parent
    status = pytest.main(["-q", "-p", "no:cacheprovider", str(here), *sys.argv[1:]], plugins=[count])
    if status not in (0, 1) and count.failed == 0:
        count.failed = 1  # collection or usage error
    print(f"{count.passed} passed, {count.failed} failed")
    return 0 if count.failed == 0 and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
