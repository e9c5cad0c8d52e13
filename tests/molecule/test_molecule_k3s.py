"""Molecule scenario of the k3s role and playbooks/k3s.yml, run for real:
`cd roles/k3s && molecule test -s k3s`.

A server container (Docker runtime, with a real dockerd inside) and an agent container
(containerd) are installed from an air-gap directory whose binary is a stand-in for k3s, which
cannot be downloaded here (the scenario's files/k3s-stand-in.py says what it does). The agent joins
with the server's agent-only token under its edgecast_node_name, reads proxy settings from its
unit's environment file, and prefers k3s's bundled iptables over a stand-in for Ubuntu 20.04's
1.8.4. The scenario
converges, converges again (no change), runs --check (no change) and verifies the nodes, the
refusals on an untouched third container and on a 32-bit ARM one (armhf under qemu), and the
kubeconfig on the control node. The containers are kept until this module has read the
cluster's secrets from them, to prove that no run printed them.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edgecast_harness.docker import base_image
from edgecast_harness.molecule import (
    flat,
    molecule_environment,
    recap_counts,
    role_dir,
    run_molecule,
    step_output,
)

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64 systemd", "amd64 docker", "armhf")

SCENARIO_TIMEOUT_S = 1500
SERVER = "edgecast-molecule-k3s-server"
AGENT = "edgecast-molecule-k3s-agent"
PRISTINE = "edgecast-molecule-k3s-pristine"
NODE_TOKEN = "/var/lib/rancher/k3s/server/node-token"
AGENT_TOKEN = "/var/lib/rancher/k3s/server/agent-token"


@dataclass
class K3sRun:
    """The molecule log of the scenario and the secrets its cluster holds."""

    output: str
    node_token: str
    agent_token: str
    agent_config: str
    admin_kubeconfig: str
    user_token_node_token: str
    user_token_agent_token: str


def read_file(container: str, path: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, "cat", path],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


@pytest.fixture(scope="module")
def k3s_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sRun]:
    env = molecule_environment()
    base_image("amd64", "systemd")
    base_image("amd64", "docker")
    base_image("armhf")
    log = tmp_path_factory.mktemp("molecule-k3s") / "molecule-k3s.log"
    try:
        output = run_molecule(
            "k3s", "k3s", env, log, "--destroy", "never", timeout=SCENARIO_TIMEOUT_S
        )
        yield K3sRun(
            output=output,
            node_token=read_file(SERVER, NODE_TOKEN),
            agent_token=read_file(SERVER, AGENT_TOKEN),
            agent_config=read_file(AGENT, "/etc/rancher/k3s/config.yaml"),
            admin_kubeconfig=read_file(SERVER, "/etc/rancher/k3s/k3s.yaml"),
            # verify.yml installs the third container last, with join tokens of its own.
            user_token_node_token=read_file(PRISTINE, NODE_TOKEN),
            user_token_agent_token=read_file(PRISTINE, AGENT_TOKEN),
        )
    finally:
        subprocess.run(
            ["molecule", "destroy", "-s", "k3s"],
            cwd=role_dir("k3s"),
            env=env,
            capture_output=True,
            timeout=600,
            check=False,
        )


def test_converge_installs_then_changes_nothing(k3s_run: K3sRun) -> None:
    converge = step_output(k3s_run.output, "converge")
    assert max(recap_counts(converge, "changed")) > 0, f"converge changed nothing:\n{converge}"
    text = flat(converge)
    for phrase in (
        "Install the verified k3s binary",
        "Load the air-gap images into Docker and record them",
        "Write the kubeconfig on the control node",
    ):
        assert re.search(rf"{re.escape(phrase)}\]? \**\s*changed", text), phrase

    idempotence = step_output(k3s_run.output, "idempotence")
    assert set(recap_counts(idempotence, "changed")) == {0}, f"not idempotent:\n{idempotence}"
    assert set(recap_counts(idempotence, "failed")) == {0}, idempotence


def test_check_mode_on_converged_nodes_reports_no_change(k3s_run: K3sRun) -> None:
    check = step_output(k3s_run.output, "check")
    assert "ansible-playbook --check" in flat(check), check[:2000]
    assert set(recap_counts(check, "changed")) == {0}, f"--check reported changes:\n{check}"
    assert set(recap_counts(check, "failed")) == {0}, check


def test_verify_covers_state_and_refusals(k3s_run: K3sRun) -> None:
    verify = flat(step_output(k3s_run.output, "verify"))
    # The refusals verify.yml rescued, each with the role's own message.
    for phrase in (
        "sha256 mismatch, expected",
        "refusing the download of file://",
        "but Docker Engine does not answer",
        "group k3s_two_servers must hold exactly one host, the server; it holds 2",
        "to one-line values without double quotes or backslashes",
        "the user's own kubeconfig ~/.kube/config: this role never writes over it",
        "waited 4 s on edgecast-molecule-k3s-server for the nodes",
        "is armv7l; this role installs k3s on x86_64 and aarch64 only. k3s needs a 64-bit userland",
    ):
        assert phrase in verify, phrase
    assert set(recap_counts(verify, "failed")) == {0}, verify[-3000:]


def test_no_secret_in_any_output(k3s_run: K3sRun) -> None:
    token = k3s_run.node_token.strip()
    secret = token.split("::server:", 1)[1]
    assert len(secret) >= 32, "the stand-in server did not generate a join token"
    agent_token = k3s_run.agent_token.strip()
    agent_secret = agent_token.split("::node:", 1)[1]
    assert len(agent_secret) == 48, "the role did not give the server an agent token"
    assert f"token: {agent_token}" in k3s_run.agent_config, "the agent has not the agent token"
    assert secret not in k3s_run.agent_config, "the agent holds the server token"
    user_token = k3s_run.user_token_node_token.strip().split("::server:", 1)[1]
    assert user_token.startswith("user-given-join-token-"), "the given token was not used"
    user_agent_token = k3s_run.user_token_agent_token.strip().split("::node:", 1)[1]
    assert user_agent_token.startswith("user-given-agent-token-"), "the agent token was not used"
    key = re.search(r"client-key-data: (\S+)", k3s_run.admin_kubeconfig)
    assert key, k3s_run.admin_kubeconfig
    leaked = [
        name
        for name, value in {
            "join token": secret,
            "agent token": agent_secret,
            "given join token": user_token,
            "given agent token": user_agent_token,
            "join token file (base64)": base64.b64encode(k3s_run.node_token.encode()).decode(),
            "agent config.yaml (base64)": base64.b64encode(k3s_run.agent_config.encode()).decode(),
            "kubeconfig client key": key.group(1),
        }.items()
        if value in k3s_run.output
    ]
    assert not leaked, f"printed by molecule or ansible: {', '.join(leaked)}"
