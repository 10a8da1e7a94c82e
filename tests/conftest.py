"""Fixtures only: the helpers live in tests/support."""
import pytest

from tests.support.servers import start_server


@pytest.fixture
def serve(tmp_path):
    """serve(*cli_args) -> Server; every server is stopped when the test ends."""
    servers = []

    def start(*args, **kw):
        server = start_server(tmp_path, *args, **kw)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()
