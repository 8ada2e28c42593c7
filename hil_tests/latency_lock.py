"""`make test` runs the sim suite and the MCU boards' suites side by side, each on several workers
(most HIL tests wait on real time, not on the CPU). A test that measures a time bound wraps the
trigger and its measurement in `with latency():`, which takes a lock: no two such windows, in any
of those processes, share the CPU, while everything else goes on beside them.
$EVSE_LATENCY_LOCK names another lock file."""
import contextlib
import fcntl
import os
import tempfile

import pytest


def lock_path() -> str:
    return os.environ.get("EVSE_LATENCY_LOCK") or os.path.join(tempfile.gettempdir(),
                                                               "evse-hil-latency-%d.lock" % os.getuid())


@contextlib.contextmanager
def alone():
    with open(lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def latency():
    """`with latency():` around a trigger and the wait for what it must cause within a bound."""
    return alone
