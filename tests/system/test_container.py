"""The image, built and run for real on a local Docker engine, and the compose stack brought up.

No registry is reachable here, so the base image is a stand-in: Debian bookworm made with
debootstrap (cached between runs in /var/cache/fastsock-ci) and imported into a Docker engine
this test starts itself, with its own data root and socket. Containers are reached only through
ports published on 127.0.0.1; everything built is removed and the engine stopped at the end."""
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import warnings
from pathlib import Path

import docker
import httpx
import pytest

from tests.support.servers import ROOT, free_port
from tests.support.tools import need, need_root, prometheus_bin

CACHE = Path(os.environ.get("FASTSOCK_CI_CACHE", "/var/cache/fastsock-ci"))
STANDIN = "fastsock-standin:bookworm"
PACKAGES = "python3,python3-venv,python3-pip,python3-dev,ca-certificates"


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_healthy(container, what: str) -> None:
    """Until the image's HEALTHCHECK says healthy; the container's log if it stops first."""
    def healthy():
        container.reload()
        assert container.status in ("created", "running"), container.logs()[-2000:]
        return container.attrs["State"].get("Health", {}).get("Status") == "healthy"
    wait_for(healthy, 90, what)


def standin_tarball() -> Path:
    """A root filesystem of Debian bookworm with Python, made once and cached."""
    tarball = CACHE / "standin-bookworm.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="fastsock-standin-"))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                        str(root), "http://deb.debian.org/debian"], check=True,
                       stdout=subprocess.DEVNULL)
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        (root / "usr/bin/python").symlink_to("python3")
        # package downloads pass through a TLS proxy here: trust what this machine trusts
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/")
        (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / cache).glob("*.deb"):
                f.unlink()
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(root, arcname=".")
        partial.rename(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


@pytest.fixture(scope="module")
def engine():
    """A Docker engine of our own: started here, stopped and wiped at the end."""
    need_root("it starts a Docker engine of its own")
    dockerd = need("dockerd", "apt-get install docker.io")
    need("debootstrap", "apt-get install debootstrap (it makes the base image offline)")
    base = Path(tempfile.mkdtemp(prefix="fastsock-dockerd-"))
    sock = base / "docker.sock"
    log = open(base / "dockerd.log", "wb")
    proc = subprocess.Popen([dockerd, f"--data-root={base / 'data'}",
                             f"--exec-root={base / 'exec'}", f"--host=unix://{sock}",
                             f"--pidfile={base / 'docker.pid'}"], stdout=log, stderr=log)
    client = None
    try:
        def connect():
            try:
                return docker.DockerClient(base_url=f"unix://{sock}", timeout=600)
            except docker.errors.DockerException:
                assert proc.poll() is None, (base / "dockerd.log").read_text()[-2000:]
                return None
        client = wait_for(connect, 60, "dockerd")
        client.api.import_image_from_file(str(standin_tarball()), repository="fastsock-standin",
                                          tag="bookworm")
        client.images.get(STANDIN)
        yield client, sock
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            for image in client.images.list():
                client.images.remove(image.id, force=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["umount", "-R", str(base / "exec")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def app_image(engine):
    client, _ = engine
    image, _ = client.images.build(path=str(ROOT), tag="fastsock-app:local",
                                   buildargs={"BASE_IMAGE": STANDIN}, network_mode="host",
                                   rm=True, forcerm=True)
    return image


def test_image_runs_healthy_and_stops_cleanly_under_load(engine, app_image):
    client, _ = engine
    port = free_port()
    container = client.containers.run(
        app_image.id, detach=True, ports={"8000/tcp": ("127.0.0.1", port)},
        environment={"FASTSOCK_WORKERS": "2", "FASTSOCK_SHUTDOWN_DELAY": "1",
                     "FASTSOCK_GRACEFUL_TIMEOUT": "10", "FASTSOCK_ACCESS_LOG": "json"})
    try:
        wait_healthy(container, "the HEALTHCHECK to report healthy")
        assert container.attrs["Config"]["User"] == "10001:10001"
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/").text == "hello"
        assert httpx.get(url + "/healthz").status_code == 200
        metrics = httpx.get(url + "/metrics")
        assert metrics.status_code == 200 and "fastsock_requests_total" in metrics.text

        answered, failed = [], []
        stop = threading.Event()

        def load():
            with httpx.Client(base_url=url, timeout=10) as c:
                while not stop.is_set() and len(answered) < 100_000:
                    try:
                        answered.append(c.get("/").status_code)
                    except httpx.HTTPError as e:
                        # once fastsock stops listening, docker's port proxy still takes the
                        # connection and then drops it: such requests never reached fastsock
                        failed.append(repr(e))
                        time.sleep(0.01)
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: len(answered) > 200, 20, "load")
        container.stop(timeout=30)
        stop.set()
        for t in threads:
            t.join(15)
        # 0, not 137: it stopped on SIGTERM within the grace period, not by docker's SIGKILL
        assert container.wait(timeout=10)["StatusCode"] == 0
        assert set(answered) == {200}
        # no request lost: every request fastsock took (its access log) was answered to the
        # client, and none of the failures was one it had taken
        logs = container.logs(stdout=True, stderr=False).decode().splitlines()
        taken = sum(1 for line in logs if '"path":"/"' in line)
        assert taken == len(answered) + 1, (taken, len(answered), failed[:3])
    finally:
        container.remove(force=True)


def test_compose_stack_comes_up_and_prometheus_scrapes_the_app(engine, app_image, tmp_path):
    client, sock = engine
    context = tmp_path / "prometheus-image"
    context.mkdir()
    shutil.copy(prometheus_bin("prometheus"), context / "prometheus")
    shutil.copy(ROOT / "tests/system/containers/prometheus.Dockerfile", context / "Dockerfile")
    client.images.build(path=str(context), tag="fastsock-prometheus:standin",
                        buildargs={"BASE_IMAGE": STANDIN}, rm=True)
    import compose
    binary = str(Path(compose.__file__).parent / "docker-compose")
    app_port, prom_port = free_port(), free_port()
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "APP_PORT": str(app_port),
           "PROMETHEUS_PORT": str(prom_port)}
    cmd = [binary, "-p", "fastsock-test", "-f", "docker-compose.yml", "-f",
           "tests/system/containers/compose.offline.yml"]
    warnings.warn("compose test: Grafana is left out — its image cannot be pulled offline; "
                  "app and Prometheus (a local stand-in image) run for real")
    try:
        up = subprocess.run(cmd + ["up", "--no-build", "--wait", "--wait-timeout", "120",
                                   "app", "prometheus"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert httpx.get(f"http://127.0.0.1:{app_port}/").text == "hello"

        def target_up():
            try:
                r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query",
                              params={"query": 'up{job="fastsock"}'}).json()
            except (httpx.HTTPError, ValueError):
                return False
            result = r["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1"
        wait_for(target_up, 60, "Prometheus to report the app target up")
    finally:
        subprocess.run(cmd + ["down", "--volumes", "--timeout", "20"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)


def test_a_service_of_your_own_on_the_fastsock_image(engine, app_image):
    """The README's Dockerfile for a user's service (examples/service): built on the image,
    with a dependency of its own installed, it serves its app, healthy, as the image's user."""
    client, _ = engine
    image, _ = client.images.build(path=str(ROOT / "examples" / "service"),
                                   tag="myservice:local", network_mode="host", rm=True,
                                   forcerm=True, buildargs={"FASTSOCK_IMAGE": "fastsock-app:local"})
    port = free_port()
    container = client.containers.run(image.id, detach=True,
                                      ports={"8000/tcp": ("127.0.0.1", port)},
                                      environment={"FASTSOCK_WORKERS": "2"})
    try:
        wait_healthy(container, "the inherited HEALTHCHECK to report healthy")
        assert container.attrs["Config"]["User"] == "10001:10001"
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/").json() == {"service": "myservice", "served_by": "fastsock"}
        assert httpx.get(url + "/items/7").json() == {"id": 7}
        metrics = httpx.get(url + "/metrics").text
        assert 'route="/items/<int:item_id>"' in metrics            # Flask's rule, not the path
        container.stop(timeout=30)
        assert container.wait(timeout=10)["StatusCode"] == 0
        access = [json.loads(line) for line in
                  container.logs(stdout=True, stderr=False).decode().splitlines()]
        # (two workers: each writes its own lines, in its own batches)
        assert sorted(a["path"] for a in access) == ["/", "/items/7"]
    finally:
        container.remove(force=True)
