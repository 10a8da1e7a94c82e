"""A fork that fails: a pids cgroup (which takes root to make) lets the master start fewer workers
than asked."""
import os
import time
from pathlib import Path

from tests.support.servers import ready
from tests.support.waiting import wait_until


def test_a_failed_fork_is_logged_and_retried(serve, tmp_path):
    """A pids limit (cgroup v1 or v2) lets the master start one worker of two: the fork
    failure is logged, retried with the backoff, and succeeds once the limit is raised."""
    group = pids_cgroup(tmp_path)
    try:
        (group / "pids.max").write_text("2\n")        # the master and one worker
        server = serve("--workers", "2", preexec_fn=lambda: (group / "cgroup.procs")
                       .write_text(str(os.getpid())))
        wait_until(lambda: "fork failed" in server.log(), what="a failed fork", server=server)
        assert server.get("/").status_code == 200        # the one worker serves
        assert ready(server) == 503                      # not every worker is up
        (group / "pids.max").write_text("10\n")
        wait_until(lambda: ready(server) == 200, timeout=15, what="the retried fork",
                   server=server)
        assert server.log().count("fork failed") >= 1
        server.stop()
    finally:
        deadline = time.monotonic() + 10
        while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        group.rmdir()


def pids_cgroup(tmp_path):
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and (
                root.name == "pids" or "pids" in (root / "cgroup.subtree_control").read_text()):
            group = root / f"fastsock-test-{os.getpid()}-{tmp_path.name}"
            group.mkdir()
            return group
    raise AssertionError("this test needs a writable pids cgroup (run as root on Linux)")
