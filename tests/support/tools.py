"""Real tools the tests drive. No stand-ins: a tool that is missing fails its tests with one
line naming it and how to get it (`bash scripts/test.sh` installs every one). Debian's
prometheus and promtool are unpacked (not installed as a service) into .tools/ on first use."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"


SETUP = "bash scripts/test.sh installs it"


def need(tool: str, how: str) -> str:
    """The path of a command the test runs; if it is missing, the test fails with one line."""
    found = shutil.which(tool) or shutil.which(tool, path=os.path.dirname(sys.executable))
    if not found:
        pytest.fail(f"{tool} is missing: {how} ({SETUP})", pytrace=False)
    return found


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"this test runs as root: {why} (sudo bash scripts/test.sh)", pytrace=False)


def prometheus_bin(name: str) -> str:
    """Path of `prometheus` or `promtool`."""
    found = shutil.which(name)
    if found:
        return found
    need("apt-get", "it unpacks Debian's prometheus package; on another system install "
                    "Prometheus so that prometheus and promtool are on the PATH")
    unpacked = TOOLS / "prometheus" / "usr" / "bin" / name
    if not unpacked.exists():
        TOOLS.mkdir(exist_ok=True)
        for deb in TOOLS.glob("prometheus_*.deb"):
            deb.unlink()
        r = subprocess.run(["apt-get", "download", "prometheus"], cwd=TOOLS, capture_output=True,
                           text=True)
        debs = list(TOOLS.glob("prometheus_*.deb"))
        if not debs:
            pytest.fail("prometheus is missing: apt-get download prometheus failed (run "
                        f"apt-get update first; {SETUP}): {r.stderr.strip()}", pytrace=False)
        subprocess.run(["dpkg", "-x", str(debs[0]), str(TOOLS / "prometheus")], check=True)
    return str(unpacked)
