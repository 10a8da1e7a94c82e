"""fastsock as PID 1 of a PID namespace (as in a container without an init): it needs root."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import ROOT, children, free_port
from tests.support.tools import need, need_root
from tests.support.waiting import wait_until


def test_as_pid_1_it_stops_on_sigterm_and_reaps_orphans(tmp_path):
    """In a new PID namespace fastsock is PID 1: a signal from outside must still reach it,
    and a process orphaned inside is reaped by it."""
    need_root("it makes a PID namespace")
    need("unshare", "apt-get install util-linux")
    app = tmp_path / "orphans.py"
    app.write_text(
        "import os, time\n"
        "from fastsock import App\n"
        "app = App()\n"
        "@app.get('/orphan')\n"
        "def orphan(req):\n"
        "    if os.fork() == 0:\n"                      # a child that leaves a grandchild
        "        if os.fork() == 0:\n"
        "            time.sleep(0.2)\n"
        "            os._exit(0)\n"
        "        os._exit(0)\n"
        "    os.wait()\n"
        "    return str(os.getpid())\n")
    port = free_port()
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "fastsock",
         "orphans:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}"},
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "never served"
                time.sleep(0.05)
        master = int(next(Path(f"/proc/{proc.pid}/task").glob("*/children")).read_text().split()[0])
        nspid_line = next(line for line in Path(f"/proc/{master}/status").read_text().splitlines()
                          if line.startswith("NSpid:"))
        assert nspid_line.split()[-1] == "1", "fastsock is not PID 1 in its namespace"
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{port}/orphan").status_code == 200

        def zombies():
            found = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] == "Z" and int(fields[1]) == master:
                    found.append(stat)
            return found
        # the three orphans (each sleeps 0.2 s) were PID 1's children: reaped, they are gone,
        # and only the worker is left; a PID 1 that did not reap would keep them as zombies
        wait_until(lambda: len(children(master)) == 1 and zombies() == [],
                   what="the orphans reaped")
        os.kill(master, signal.SIGTERM)                 # as `docker stop` would
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
