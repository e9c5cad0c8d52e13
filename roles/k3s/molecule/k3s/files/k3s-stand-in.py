#!/usr/bin/env python3
"""STAND-IN for the k3s binary, used only by the k3s role's Molecule scenario (molecule/k3s).

The real k3s cannot be downloaded on the machines that run this project's tests, so the scenario
installs this script in its place, through the role's air-gap path and with its own sha256 in the
air-gap directory's sha256sum-amd64.txt. It does what the role relies on, and nothing more:

- ``k3s server``: writes the server token (<data>/server/node-token, kept across restarts), the
  agent token as k3s documents it (<data>/server/agent-token: ``K10<ca hash>::node:<secret>`` from
  config.yaml ``agent-token`` or ``agent-token-file``, else a link to the server token) and the
  admin kubeconfig (/etc/rancher/k3s/k3s.yaml, with made-up credentials), refuses to start when
  config.yaml asks for ``docker: true`` and Docker does not answer, listens on the API port for
  agents (plain TCP lines, not TLS), tells systemd it is ready (sd_notify READY=1), then serves.
- ``k3s agent``: reads ``server``, ``token`` and ``node-name`` from config.yaml and registers its
  node with that server every few seconds; the server refuses a wrong token and records which
  kind of token (``server`` or ``node``, the agent token) each node joined with.
- ``k3s kubectl get nodes [-o json]``: on the server, lists its own node and every agent that
  registered in the last minute as Ready.
- ``k3s --version``.

No Kubernetes runs here: no API server, no kubelet, no containers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import socketserver
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

VERSION = "v1.33.5+k3s1"
CONFIG = Path("/etc/rancher/k3s/config.yaml")
KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
SERVER_DIR = Path("/var/lib/rancher/k3s/server")
NODES_DIR = SERVER_DIR / "stand-in-nodes"
REGISTER_EVERY_S = 5
NODE_LOST_AFTER_S = 60


def read_config() -> dict[str, str]:
    """The top-level scalar keys of config.yaml (to_nice_yaml output); lists are skipped."""
    config: dict[str, str] = {}
    if not CONFIG.exists():
        return config
    for line in CONFIG.read_text().splitlines():
        if line[:1] in ("", " ", "-", "#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        config[key.strip()] = value
    return config


def node_name(config: dict[str, str]) -> str:
    return config.get("node-name") or socket.gethostname()


def token_secret(token: str) -> str:
    """The secret part of a token: K10<ca hash>::<user>:<secret>, or the bare secret."""
    if "::" not in token:
        return token
    return token.split("::", 1)[1].partition(":")[2]


def notify_ready() -> None:
    """sd_notify(READY=1) from the main process, as Type=notify expects."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.chmod(0o600)
    temporary.replace(path)


CA_HASH = hashlib.sha256(b"stand-in cluster CA").hexdigest()


def server_token(config: dict[str, str]) -> str:
    """The node-token: the configured token's secret, or the one generated at the first start."""
    token_file = SERVER_DIR / "node-token"
    if config.get("token"):
        secret = token_secret(config["token"])
    elif token_file.exists():
        secret = token_secret(token_file.read_text().strip())
    else:
        secret = secrets.token_hex(16)
    token = f"K10{CA_HASH}::server:{secret}"
    write_private(token_file, token + "\n")
    return token


def agent_token(config: dict[str, str]) -> str:
    """The agent token's secret, written as k3s writes it; "" links the file to the server token."""
    token_file = SERVER_DIR / "agent-token"
    if config.get("agent-token-file"):
        secret = token_secret(Path(config["agent-token-file"]).read_text().strip())
    else:
        secret = token_secret(config.get("agent-token", ""))
    token_file.unlink(missing_ok=True)
    if secret:
        write_private(token_file, f"K10{CA_HASH}::node:{secret}\n")
    else:
        token_file.symlink_to(SERVER_DIR / "node-token")
    return secret


def write_kubeconfig(port: str) -> None:
    def fake(label: str) -> str:
        return secrets.token_urlsafe(24) + "-stand-in-" + label

    write_private(
        KUBECONFIG,
        f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {fake("ca")}
    server: https://127.0.0.1:{port}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {fake("cert")}
    client-key-data: {fake("key")}
""",
    )


def serve(config: dict[str, str]) -> int:
    if config.get("docker") == "true":
        docker = subprocess.run(["docker", "info"], capture_output=True, check=False)
        if docker.returncode != 0:
            print("stand-in k3s: docker: true, but Docker does not answer", file=sys.stderr)
            return 1
    secret = token_secret(server_token(config))
    agent_secret = agent_token(config)
    port = config.get("https-listen-port") or "6443"
    if not KUBECONFIG.exists():
        write_kubeconfig(port)
    NODES_DIR.mkdir(parents=True, exist_ok=True)

    class Registration(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                request = json.loads(self.rfile.readline(4096))
                name, token = str(request["node"]), str(request["token"])
            except (ValueError, KeyError, TypeError):
                self.wfile.write(b"bad request\n")
                return
            given = token_secret(token)
            if hmac.compare_digest(given, secret):
                kind = "server"
            elif agent_secret and hmac.compare_digest(given, agent_secret):
                kind = "node"
            else:
                kind = ""
            if not kind or "/" in name:
                self.wfile.write(b"unauthorized\n")
                return
            (NODES_DIR / name).write_text(f"{time.time()} {kind}\n")
            self.wfile.write(b"ok\n")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("", int(port)), Registration) as api:
        notify_ready()
        api.serve_forever()
    return 0


def agent(config: dict[str, str]) -> int:
    url = urlsplit(config.get("server", ""))
    if not url.hostname or not config.get("token"):
        print("stand-in k3s agent: config.yaml needs server and token", file=sys.stderr)
        return 1
    request = json.dumps({"node": node_name(config), "token": config["token"]}) + "\n"
    while True:
        try:
            with socket.create_connection((url.hostname, url.port or 6443), timeout=5) as sock:
                sock.sendall(request.encode())
                answer = sock.makefile().readline().strip()
            if answer != "ok":
                print(f"stand-in k3s agent: server answered {answer!r}", file=sys.stderr)
        except OSError as error:
            print(f"stand-in k3s agent: {url.hostname}: {error}", file=sys.stderr)
        time.sleep(REGISTER_EVERY_S)


def get_nodes(config: dict[str, str], as_json: bool) -> int:
    if not (SERVER_DIR / "node-token").exists():
        print("The connection to the server localhost:8080 was refused", file=sys.stderr)
        return 1
    now = time.time()
    nodes = {node_name(config): ("control-plane,master", True)}
    for path in sorted(NODES_DIR.glob("*")):
        seen = float(path.read_text().split()[0])
        nodes.setdefault(path.name, ("<none>", now - seen < NODE_LOST_AFTER_S))
    if as_json:
        items = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}],
                    "nodeInfo": {"kubeletVersion": VERSION},
                },
            }
            for name, (_, ready) in nodes.items()
        ]
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
    else:
        print(f"{'NAME':<40} {'STATUS':<10} {'ROLES':<22} VERSION")
        for name, (roles, ready) in nodes.items():
            print(f"{name:<40} {'Ready' if ready else 'NotReady':<10} {roles:<22} {VERSION}")
    return 0


def main(argv: list[str]) -> int:
    config = read_config()
    if argv[:1] in (["--version"], ["-v"]):
        print(f"k3s version {VERSION} (stand-in)")
        return 0
    if argv[:1] == ["server"]:
        return serve(config)
    if argv[:1] == ["agent"]:
        return agent(config)
    if argv[:3] == ["kubectl", "get", "nodes"]:
        output = argv[3:]
        return get_nodes(config, as_json=output in (["-o", "json"], ["--output", "json"]))
    print(f"stand-in k3s: not implemented: {' '.join(argv)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
