import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from granary_process import BINARY, Granary  # noqa: E402


def pytest_sessionstart(session):
    if not os.path.exists(BINARY):
        raise pytest.UsageError(f"{BINARY} is missing: build it with `swift build --product granary`")


@pytest.fixture
def granary():
    node = Granary().wait_ready()
    yield node
    node.kill()


@pytest.fixture(scope="module")
def node():
    """One node shared by a module's API tests (each test uses tables of its own)."""
    server = Granary().wait_ready()
    yield server
    server.kill()


@pytest.fixture
def client(node):
    return node.client()
