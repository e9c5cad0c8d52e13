"""Known k3s pitfalls on the target systems, decided by the roles' own variables.

The roles decide from facts and probes that containers cannot fake (Ubuntu 20.04's iptables 1.8.4,
Ubuntu 21.10 to 23.10 on a Raspberry Pi): those decisions, the join tokens, the unit's environment
file and the one node name are rendered here from the roles' defaults and vars with Ansible's own
templating, for the cases the Molecule scenarios cannot reach.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from edgecast_harness.paths import REPO

LOADER = DataLoader()
ROLES = REPO / "roles"
SERVER = "rpi-01"
AGENT = "jetson-01"


def load(path: Path) -> Any:
    return LOADER.load_from_file(str(path), trusted_as_template=True)


def role_vars(role: str) -> dict[str, Any]:
    """A role's defaults with its internal vars over them, as Ansible layers them."""
    variables = dict(load(ROLES / role / "defaults" / "main.yml"))
    if (ROLES / role / "vars" / "main.yml").exists():
        variables.update(load(ROLES / role / "vars" / "main.yml"))
    return variables


def render(template: Any, variables: dict[str, Any]) -> Any:
    """A template string, or data loaded from a role (already trusted), rendered."""
    trusted = trust_as_template(template) if isinstance(template, str) else template
    return Templar(loader=LOADER, variables=variables).template(trusted)


def task(path: Path, name: str) -> dict[str, Any]:
    return next(item for item in load(path) if item["name"] == name)


def k3s_host(host: str, iptables: str = "", **extra: Any) -> dict[str, Any]:
    """The k3s role's variables on one host of a two-node fleet (the server rpi-01, an agent)."""
    agent_token = f"K10{'c' * 64}::node:{'a' * 48}\n"
    return {
        **role_vars("k3s"),
        "inventory_hostname": host,
        "groups": {"k3s_server": [SERVER], "k3s_agent": [AGENT]},
        "hostvars": {SERVER: {"ansible_host": "192.0.2.21"}, AGENT: {"ansible_host": "192.0.2.31"}},
        "__k3s_iptables": {"stdout": iptables, "rc": 0 if iptables else 2},
        "__k3s_agent_token_read": {"content": base64.b64encode(agent_token.encode()).decode()},
        **extra,
    }


def k3s_config(host: str, iptables: str = "", **extra: Any) -> dict[str, Any]:
    return render("{{ __k3s_config }}", k3s_host(host, iptables, **extra))


@pytest.mark.parametrize(
    ("iptables", "bundled"),
    [
        ("iptables v1.8.4 (legacy)", True),  # Ubuntu 20.04
        ("iptables v1.8.4 (nf_tables)", True),
        ("iptables v1.8.2 (nf_tables)", True),  # Debian 10
        ("iptables v1.8.0", True),
        ("iptables v1.8.7 (nf_tables)", False),  # Ubuntu 22.04, Debian 11
        ("iptables v1.8.9 (nf_tables)", False),  # Debian 12
        ("iptables v1.6.1", False),  # Ubuntu 18.04
        ("", False),  # no iptables: k3s uses its own anyway
    ],
)
def test_iptables_1_8_0_to_1_8_4_makes_k3s_prefer_its_bundled_one(
    iptables: str, bundled: bool
) -> None:
    for host in (SERVER, AGENT):
        config = k3s_config(host, iptables)
        assert ("prefer-bundled-bin" in config) is bundled, (host, iptables, config)
        if bundled:
            assert config["prefer-bundled-bin"] is True


def test_the_users_config_wins_over_the_iptables_decision() -> None:
    config = k3s_config(AGENT, "iptables v1.8.4 (legacy)", k3s_config={"prefer-bundled-bin": False})
    assert config["prefer-bundled-bin"] is False


def test_agents_join_with_the_agent_token_the_server_wrote_never_the_server_token() -> None:
    server = k3s_config(SERVER, k3s_token="server-secret")
    assert server["token"] == "server-secret"
    assert server["agent-token-file"] == "/etc/rancher/k3s/agent-token"
    assert "agent-token" not in server
    agent = k3s_config(AGENT, k3s_token="server-secret")
    assert agent["token"] == f"K10{'c' * 64}::node:{'a' * 48}"
    assert agent["server"] == "https://192.0.2.21:6443"


def test_a_given_agent_token_goes_to_the_server_and_the_agents() -> None:
    server = k3s_config(SERVER, k3s_agent_token="agent-secret")
    assert server["agent-token"] == "agent-secret"
    assert "agent-token-file" not in server
    assert k3s_config(AGENT, k3s_agent_token="agent-secret")["token"] == "agent-secret"


def test_the_unit_reads_the_environment_file_the_role_writes() -> None:
    variables = k3s_host(
        AGENT,
        ansible_managed="managed",
        k3s_service_environment={"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"},
    )
    unit = render((ROLES / "k3s" / "templates" / "k3s.service.j2").read_text(), variables)
    assert "EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env" in unit.splitlines()
    write = task(
        ROLES / "k3s" / "tasks" / "service.yml",
        "Write the unit's environment file (proxy settings)",
    )
    assert render(write["ansible.builtin.copy"]["dest"], variables) == (
        "/etc/systemd/system/k3s-agent.service.env"
    )
    assert render(write["ansible.builtin.copy"]["content"], variables) == (
        'HTTP_PROXY="http://proxy:3128"\nNO_PROXY="10.0.0.0/8"\n'
    )
    assert write["no_log"] is True


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("v1.33.5+k3s1", True),
        ("v1.26.0+k3s1", True),
        ("v1.25.16+k3s4", False),
        ("v1.24.9-rc1+k3s1", False),
    ],
)
def test_releases_older_than_the_config_keys_are_refused(version: str, accepted: bool) -> None:
    check = task(
        ROLES / "k3s" / "tasks" / "assert.yml",
        "Require a k3s release that knows every config.yaml key this role writes",
    )
    expression = "{{ " + check["ansible.builtin.assert"]["that"][0] + " }}"
    assert render(expression, k3s_host(SERVER, k3s_version=version)) is accepted


NODE_NAME_DEFAULTS = {
    "k3s": "k3s_node_name",
    "edge_os": "edge_os_hostname",
    "predictor_deploy": "predictor_deploy_node_name",
    "model_rollout": "model_rollout_node_name",
}


@pytest.mark.parametrize(("role", "variable"), NODE_NAME_DEFAULTS.items())
def test_one_node_name_for_the_host_k3s_and_the_predictor(role: str, variable: str) -> None:
    defaults = load(ROLES / role / "defaults" / "main.yml")
    plain = {"inventory_hostname": AGENT, variable: defaults[variable]}
    assert render("{{ " + variable + " }}", plain) == AGENT
    named = {**plain, "edgecast_node_name": "jetson-nano-01"}
    assert render("{{ " + variable + " }}", named) == "jetson-nano-01"


def test_the_server_waits_for_each_agent_under_its_node_name() -> None:
    variables = k3s_host(SERVER)
    variables["hostvars"][AGENT]["edgecast_node_name"] = "jetson-nano-01"
    assert render("{{ __k3s_expected_nodes }}", variables) == [SERVER, "jetson-nano-01"]
    variables["hostvars"][AGENT]["k3s_node_name"] = "k3s-only-name"
    assert render("{{ __k3s_expected_nodes }}", variables) == [SERVER, "k3s-only-name"]


@pytest.mark.parametrize(
    ("distribution", "version", "model", "needed"),
    [
        ("Ubuntu", "20.04", "Raspberry Pi 4 Model B Rev 1.4\0", False),
        ("Ubuntu", "21.10", "Raspberry Pi 4 Model B Rev 1.4\0", True),
        ("Ubuntu", "22.04", "Raspberry Pi 4 Model B Rev 1.5\0", True),
        ("Ubuntu", "23.10", "Raspberry Pi 5 Model B Rev 1.0\0", True),
        ("Ubuntu", "24.04", "Raspberry Pi 4 Model B Rev 1.4\0", False),
        ("Ubuntu", "22.04", "NVIDIA Jetson Nano Developer Kit\0", False),
        ("Ubuntu", "22.04", None, False),
        ("Debian", "12", "Raspberry Pi 4 Model B Rev 1.4\0", False),
    ],
)
def test_vxlan_modules_are_installed_only_where_ubuntu_moved_them_out_of_the_pi_kernel(
    distribution: str, version: str, model: str | None, needed: bool
) -> None:
    tasks = load(ROLES / "edge_os" / "tasks" / "assert.yml")
    describe = next(item for item in tasks if item["name"] == "Describe the platform")
    read = {"content": base64.b64encode(model.encode()).decode()} if model else {"failed": True}
    variables = {
        **role_vars("edge_os"),
        "inventory_hostname": "rpi-01",
        "ansible_facts": {
            "architecture": "aarch64",
            "distribution": distribution,
            "distribution_version": version,
        },
        "edge_os_userland_bits": {"stdout": "64"},
        "edge_os_dpkg_architecture": {"stdout": "arm64"},
        "edge_os_device_tree_model": read,
    }
    variables["edge_os_platform"] = render(
        describe["ansible.builtin.set_fact"]["edge_os_platform"], variables
    )
    packages = render("{{ __edge_os_packages }}", variables)
    assert ("linux-modules-extra-raspi" in packages) is needed, packages
    assert packages[: len(variables["edge_os_packages"])] == variables["edge_os_packages"]
    off = {**variables, "edge_os_raspi_extra_modules": False}
    assert "linux-modules-extra-raspi" not in render("{{ __edge_os_packages }}", off)
