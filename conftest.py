"""Hooks for every test run, `tests` and `hil_tests` alike."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes a minute or so (`make quick` leaves it out); runs first")


def pytest_collection_modifyitems(config, items):
    """The tests marked slow (a minute of a virtual day, an outage) go first: pytest-xdist hands
    out work in collection order, and a slow test handed out last keeps one worker busy while the
    others have finished. The order within each kind stays as collected."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
