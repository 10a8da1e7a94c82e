"""Renders user-data.yaml and cloudformation.yaml from the files beside it, so the systemd
units, the environment and the install script have one source. `python deploy/ec2/render.py`;
a test checks that the committed outputs match."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = [  # (path on the instance, file here, mode)
    ("/etc/fastsock/install.env", None, "0644"),
    ("/etc/fastsock/fastsock.env", "fastsock.env", "0644"),
    ("/usr/local/sbin/fastsock-install", "install.sh", "0755"),
    ("/opt/fastsock/app/service.py", "service.py", "0644"),
    ("/etc/systemd/system/fastsock.socket", "fastsock.socket", "0644"),
    ("/etc/systemd/system/fastsock.service", "fastsock.service", "0644"),
]


def indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else "" for line in text.splitlines())


def user_data(package: str = "fastsock") -> str:
    parts = ["""#cloud-config
# Installs fastsock in /opt/fastsock and runs it under systemd, socket-activated on port 8000.
# FASTSOCK_PACKAGE: a pip requirement for fastsock (an index name, a wheel URL, a VCS URL).
package_update: true
packages:
  - python3-venv
  - python3-dev
  - gcc
users:
  - default
  - name: fastsock
    system: true
    shell: /usr/sbin/nologin
    no_create_home: true
write_files:
"""]
    for path, source, mode in FILES:
        content = f"FASTSOCK_PACKAGE={package}\n" if source is None else (HERE / source).read_text()
        parts.append(f"  - path: {path}\n    permissions: \"{mode}\"\n    content: |\n"
                     f"{indent(content, 6)}\n")
    parts.append("""runcmd:
  - [/usr/local/sbin/fastsock-install]
  - [systemctl, daemon-reload]
  - [systemctl, enable, --now, fastsock.socket]
  - [systemctl, enable, --now, fastsock.service]
""")
    return "".join(parts)


def cloudformation() -> str:
    # inside !Sub, ${PackageSpec} is the parameter and ${!X} a literal ${X}
    data = user_data("${PackageSpec}").replace("${FASTSOCK_APP}", "${!FASTSOCK_APP}")
    return (HERE / "cloudformation.yaml.in").read_text().replace("USER_DATA", indent(data, 12))


def main() -> None:
    (HERE / "user-data.yaml").write_text(user_data())
    (HERE / "cloudformation.yaml").write_text(cloudformation())


if __name__ == "__main__":
    main()
