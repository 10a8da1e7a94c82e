"""Real tools the tests drive: Debian's prometheus and promtool, unpacked (not installed as a
service) into .tools/ on first use. No stand-ins: if they cannot be had, the tests fail."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"


def prometheus_bin(name: str) -> str:
    """Path of `prometheus` or `promtool`."""
    found = shutil.which(name)
    if found:
        return found
    unpacked = TOOLS / "prometheus" / "usr" / "bin" / name
    if not unpacked.exists():
        TOOLS.mkdir(exist_ok=True)
        for deb in TOOLS.glob("prometheus_*.deb"):
            deb.unlink()
        r = subprocess.run(["apt-get", "download", "prometheus"], cwd=TOOLS, capture_output=True,
                           text=True)
        debs = list(TOOLS.glob("prometheus_*.deb"))
        if not debs:
            raise RuntimeError("cannot get Debian's prometheus package (run apt-get update "
                               f"first?): {r.stderr.strip()}")
        subprocess.run(["dpkg", "-x", str(debs[0]), str(TOOLS / "prometheus")], check=True)
    return str(unpacked)
