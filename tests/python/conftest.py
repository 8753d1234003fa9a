"""Shared pytest setup for tests/python.

Hypothesis profiles (select with LINATTN_HYPOTHESIS_PROFILE):
  default   bounded example counts, no deadline: the whole folder runs in about 1-2 minutes;
  thorough  10x the examples, for a long local soak;
  quick     a handful of examples (smoke).
Tests scale their own example budgets by settings.default.max_examples / 100.
The run ends with the line `N passed, N failed` (team convention), printed after pytest's summary.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_SCALE = {"quick": 0.1, "default": 1.0, "thorough": 10.0}
PROFILE = os.environ.get("LINATTN_HYPOTHESIS_PROFILE", "default")
if PROFILE not in _SCALE:
    raise pytest.UsageError(f"LINATTN_HYPOTHESIS_PROFILE={PROFILE!r}: expected one of {', '.join(_SCALE)}")

for _name, _scale in _SCALE.items():
    settings.register_profile(
        _name,
        deadline=None,
        max_examples=max(5, int(100 * _scale)),
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
settings.load_profile(PROFILE)


@pytest.fixture(scope="session")
def contexts():
    """{label: Context}: the default kernel family ("auto", the fast path on this CPU), the
    reference kernels and every other kernel family this CPU runs, all single-threaded (thread
    differences are tested separately)."""
    import linattn

    made = {"auto": linattn.Context(threads=1)}
    for isa in linattn.available_isas():
        made[isa] = linattn.Context(threads=1, isa=isa)
    yield made
    for ctx in made.values():
        ctx.close()


# The ONNX Runtime plugin's two ways of reading tensor shapes: through the newest C API version
# the header and the runtime share (from version 24 the allocation-free
# GetTensorElementTypeAndShapeDataReference), and through version 23, as on ONNX Runtime 1.21-1.23
# (GetTensorTypeAndShape). LINATTN_ORT_API_VERSION caps the version the plugin asks for when
# RegisterCustomOps runs, so every session made while it is set uses the older path; the plugin
# keeps one set of ops per version, so both kinds of session coexist in one process.
ORT_API_ENV = "LINATTN_ORT_API_VERSION"
ORT_API_PATHS = {"ort-api-newest": None, "ort-api-23": "23"}


@pytest.fixture(scope="module", params=list(ORT_API_PATHS))
def ort_api_path(request):
    """Runs a test_ort_* module once per shape-reading path (module-wide: `pytestmark =
    pytest.mark.usefixtures("ort_api_path")`); the value is the path's name."""
    with pytest.MonkeyPatch.context() as mp:
        version = ORT_API_PATHS[request.param]
        if version is None:
            mp.delenv(ORT_API_ENV, raising=False)
        else:
            mp.setenv(ORT_API_ENV, version)
        yield request.param


_counts = {"passed": 0, "failed": 0}


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _counts["passed"] += 1
    elif report.failed:
        _counts["failed"] += 1


def pytest_collectreport(report):
    if report.failed:
        _counts["failed"] += 1


def pytest_unconfigure(config):
    if config.option.collectonly:
        return
    print(f"{_counts['passed']} passed, {_counts['failed']} failed")
