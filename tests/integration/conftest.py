import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import harness  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def binary():
    if not Path(harness.MMA).exists():
        pytest.exit(f"mma binary not found at {harness.MMA}; build first (scripts/build)")
    return harness.MMA


@pytest.fixture
def sink(tmp_path):
    """A sink on a free port; stopped at the end of the test."""
    started = []

    def start(*extra, listen=None, name="sink"):
        addrs = listen or [f"127.0.0.1:{harness.free_port()}"]
        s = harness.Sink(tmp_path, addrs, *extra, name=name)
        started.append(s)
        return s
    yield start
    for s in started:
        s.process.stop()
    check_sanitizers(s.process for s in started)


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(body, **kw):
        s = harness.Serve(tmp_path, body, **kw)
        started.append(s)
        return s
    yield start
    for s in started:
        if s.process.alive():
            s.process.stop()
    check_sanitizers(s.process for s in started)


def check_sanitizers(processes):
    """A sanitizer report in any process's log fails the test, even if the test passed."""
    for p in processes:
        out = p.output()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in out, f"{p.args[:2]}: {marker}\n{out[-4000:]}"
