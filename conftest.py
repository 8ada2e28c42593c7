"""For the whole test run (tests/ and hil_tests/): each pytest process announces the virtual
boards it starts in a registry of its own, so `evsectl` without --port in one test finds only
that process's boards, also when `make test` runs the tests in parallel (pytest-xdist)."""
import os
import tempfile

os.environ.setdefault("EVSE_SIM_REGISTRY", os.path.join(
    tempfile.gettempdir(), "evse-sim-test-%s-%d" % (os.environ.get("PYTEST_XDIST_WORKER", "main"), os.getpid())))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: the test takes 20 s or more; it is started first")


def pytest_collection_modifyitems(config, items):
    """The slow tests first: under pytest-xdist they then start at once, side by side, rather
    than one of them starting last and keeping every other worker waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
