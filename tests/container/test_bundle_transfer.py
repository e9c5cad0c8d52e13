"""Verified bundle transfer into a node's model store, against real containers as nodes.

Every node is a real Debian container (``local/debian-amd64:bookworm``, no network) reached by
``ansible-playbook`` through the ``community.docker.docker`` connection; every bundle is a real
trained bundle (the ``trained_store`` fixture) or a copy of one. What the node holds afterwards is
read back with ``docker cp`` and checked with ``edgecast.bundle`` and ``edgecast.store``, and
whether the archive travelled is read from Ansible's own ``PUT`` log lines (``-vvv``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgecast.bundle import load_bundle_dir, pack_bundle, sign_bundle
from edgecast.rollout import transfer
from edgecast.signing import generate_keypair, load_private_key, load_public_key
from edgecast.store import ModelStore
from edgecast_harness.bundle_faults import (
    clone_bundle,
    flip_weights_byte,
    read_manifest,
    write_manifest,
)
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.docker import base_image, docker_engine
from edgecast_harness.paths import BIN, REPO
from edgecast_harness.playbook import run_playbook, write_play

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64",)
STORE = "/srv/edgecast/models"
MODULE_PATH = REPO / "plugins" / "modules" / "edgecast_bundle_store.py"
RULES_PATH = REPO / "plugins" / "module_utils" / "edgecast_store_rules.py"


# --- nodes: real containers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_image() -> str:
    docker_engine()
    return base_image("amd64")


@dataclass
class Node:
    """A container standing in for an edge node, and the Ansible inventory that reaches it."""

    name: str
    inventory: Path

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker", "exec", self.name, "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, f"{script}: {result.stderr}"
        return result

    def put(self, local: Path, remote: str) -> None:
        self.sh(f"mkdir -p {Path(remote).parent}")
        subprocess.run(["docker", "cp", str(local), f"{self.name}:{remote}"], check=True)

    def snapshot(self) -> str:
        """Every entry under the store with type, size, mode and mtime: any change shows."""
        script = f"[ -d {STORE} ] && find {STORE} -printf '%P %y %s %m %T@\\n' | sort"
        return self.sh(script, check=False).stdout

    def entries(self) -> list[str]:
        return sorted(self.sh(f"ls -A {STORE}").stdout.split())

    def copy_store(self, dest: Path) -> Path:
        """The store as the node holds it, copied out to read it with edgecast itself."""
        subprocess.run(["docker", "cp", f"{self.name}:{STORE}", str(dest)], check=True)
        return dest


def inventory_host(container: str) -> dict[str, str]:
    return {
        "ansible_connection": "community.docker.docker",
        "ansible_host": container,
        "ansible_python_interpreter": "/usr/bin/python3",
    }


@pytest.fixture
def containers(docker_image: str) -> Iterator:
    """Factory: a new container (no network) named edgecast-test-transfer-*, removed at the end."""
    started: list[str] = []

    def start() -> str:
        name = f"edgecast-test-transfer-{uuid.uuid4().hex[:10]}"
        started.append(name)
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                docker_image,
                "sleep",
                "inf",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return name

    try:
        yield start
    finally:
        for name in started:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


@pytest.fixture
def node(containers, tmp_path: Path) -> Node:
    name = containers()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"node": inventory_host(name)}}}))
    return Node(name, inventory)


# --- running Ansible --------------------------------------------------------------------------


def ansible_env() -> dict[str, str]:
    """For the one run this module starts itself, to kill it mid-way."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
    }


@dataclass
class Run:
    result: dict
    output: str

    def assert_succeeded(self, **flags: bool) -> None:
        """The task did not fail, and each of ``flags`` (changed, installed, ...) is as given."""
        assert not self.result.get("failed"), self.result.get("msg")
        for name, value in flags.items():
            assert self.result[name] is value, (name, self.result)

    @property
    def archive_sent(self) -> bool:
        """Whether Ansible copied the bundle archive to the node (its PUT log line)."""
        return any(
            " PUT " in line and line.rstrip().endswith("/bundle.tar")
            for line in self.output.splitlines()
        )


def run_and_save(module: str, args: dict, saved: Path) -> list[dict]:
    """The task under test, and a step that saves its result, failed or not, to ``saved`` on the
    controller."""
    return [
        {"name": "Task under test", module: args, "register": "out", "ignore_errors": True},
        {
            "name": "Save the result",
            "ansible.builtin.copy": {
                "content": "{{ out | to_json }}",
                "dest": str(saved),
                "mode": "0600",
            },
            "delegate_to": "localhost",
            "check_mode": False,
        },
    ]


def play(node: Node, tmp_path: Path, module: str, args: dict, *extra: str) -> Run:
    """Runs one task on the node with ansible-playbook and returns its registered result."""
    saved = tmp_path / f"result-{uuid.uuid4().hex[:8]}.json"
    playbook = write_play(
        tmp_path / f"play-{uuid.uuid4().hex[:8]}.yml",
        "node",
        run_and_save(module, args, saved),
        name="Call the task under test",
    )
    started = time.monotonic()
    completed = run_playbook(
        playbook, "-vvv", "-i", str(node.inventory), *extra, check=False, timeout=600
    )
    output = completed.stdout
    assert saved.exists(), f"the play did not finish ({completed.rc}):\n{output[-6000:]}"
    result = json.loads(saved.read_text())
    result["_seconds"] = time.monotonic() - started
    return Run(result, output)


def transfer_to(node: Node, tmp_path: Path, bundle: Path, *extra: str, **args: object) -> Run:
    return play(
        node,
        tmp_path,
        "edgecast_bundle_transfer",
        {"bundle": str(bundle), "store": STORE, **args},
        *extra,
    )


def assert_installed(node: Node, tmp_path: Path, bundle: Path, public_key: Path | None = None):
    """The node's copy is the bundle, byte for byte, and passes edgecast's own verification."""
    copy = node.copy_store(tmp_path / f"copy-{uuid.uuid4().hex[:8]}")
    model_id = read_manifest(bundle)["model_id"]
    installed = load_bundle_dir(
        copy / model_id, load_public_key(public_key) if public_key else None
    )
    assert installed.model_id == model_id
    for path in sorted(bundle.iterdir()):
        assert (copy / model_id / path.name).read_bytes() == path.read_bytes(), path.name
    assert model_id in ModelStore(copy).model_ids()
    modes = node.sh(f"stat -c '%n %a' {STORE}/{model_id} {STORE}/{model_id}/*").stdout.split("\n")
    assert modes[0].endswith(" 755"), modes
    assert all(line.endswith(" 644") for line in modes[1:] if line), modes


# --- bundles ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with copies of the trained bundles (tests change copies, never the originals)."""
    return trained_store.copy_to(tmp_path_factory.mktemp("bundles"))


def dated_clone(source: Path, parent: Path, model_id: str, created: str) -> Path:
    clone = clone_bundle(source, parent, model_id)
    manifest = read_manifest(clone)
    manifest["created"] = created
    write_manifest(clone, manifest)
    return clone


def manifest_sha256(bundle: Path) -> str:
    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


# --- the transfer, end to end -----------------------------------------------------------------


def test_first_transfer_installs_then_a_repeat_sends_nothing(
    node, bundles, trained_store, tmp_path
):
    bundle = bundles / trained_store.model_ids[0]

    first = transfer_to(node, tmp_path, bundle)
    first.assert_succeeded(changed=True, transferred=True, installed=True)
    assert first.archive_sent
    assert first.result["model_id"] == bundle.name
    assert first.result["path"] == f"{STORE}/{bundle.name}"
    assert first.result["manifest_sha256"] == manifest_sha256(bundle)
    assert_installed(node, tmp_path, bundle)
    assert node.entries() == [bundle.name]
    # The archive went to Ansible's remote temporary folder, which is gone again.
    assert node.sh("ls -A /root/.ansible/tmp").stdout.strip() == ""

    before = node.snapshot()
    again = transfer_to(node, tmp_path, bundle)
    again.assert_succeeded(changed=False, transferred=False)
    assert not again.archive_sent
    assert "nothing transferred" in again.result["msg"]
    assert node.snapshot() == before


def test_a_tar_bundle_is_sent_as_it_is(node, bundles, trained_store, tmp_path):
    bundle = bundles / trained_store.model_ids[1]
    archive = pack_bundle(bundle, tmp_path / "bundle.tar.gz")

    run = transfer_to(node, tmp_path, archive)
    run.assert_succeeded(installed=True)
    assert any(f"PUT {archive} TO" in line for line in run.output.splitlines())
    assert_installed(node, tmp_path, bundle)


def test_corrupted_bundle_is_refused_on_the_controller(node, bundles, trained_store, tmp_path):
    good = bundles / trained_store.model_ids[0]
    node.put(good, f"{STORE}/{good.name}")  # as an earlier transfer left it
    before = node.snapshot()

    broken = clone_bundle(good, tmp_path / "broken", "sbn-b13-broken-copy")
    fragments = flip_weights_byte(broken)
    run = transfer_to(node, tmp_path, broken)

    assert run.result["failed"] is True
    for fragment in [*fragments, "refused", "nothing changed on the node"]:
        assert fragment in run.result["msg"], run.result["msg"]
    assert not run.archive_sent
    assert node.snapshot() == before


def test_signatures_are_required_when_a_public_key_is_given(node, bundles, trained_store, tmp_path):
    private, public = tmp_path / "signer.pem", tmp_path / "signer.pub"
    generate_keypair(private, public)
    unsigned = clone_bundle(bundles / trained_store.model_ids[0], tmp_path / "u", "sbn-unsigned")
    signed = clone_bundle(bundles / trained_store.model_ids[0], tmp_path / "s", "sbn-signed")
    sign_bundle(signed, load_private_key(private))

    refused = transfer_to(node, tmp_path, unsigned, public_key=str(public))
    assert refused.result["failed"] is True
    assert "unsigned but a public key is configured" in refused.result["msg"]
    assert not refused.archive_sent
    assert node.sh(f"ls -A {STORE}", check=False).returncode != 0  # the store was not even made

    accepted = transfer_to(node, tmp_path, signed, public_key=str(public))
    accepted.assert_succeeded(signed=True)
    assert_installed(node, tmp_path, signed, public)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("flip-weights-byte", "weights.npz: "),
        ("extra-file", "unexpected file(s) ['notes.txt']"),
        ("missing-scaling", "missing file 'scaling.json'"),
    ],
)
def test_a_bundle_damaged_on_the_node_is_reinstalled(
    node, bundles, trained_store, tmp_path, tamper, reason
):
    bundle = bundles / trained_store.model_ids[0]
    folder = f"{STORE}/{bundle.name}"
    node.put(bundle, folder)  # as an earlier transfer left it
    if tamper == "flip-weights-byte":
        node.sh(
            "python3 -c \"import sys; p = sys.argv[1]; d = bytearray(open(p, 'rb').read()); "
            "d[len(d) // 2] ^= 0xFF; open(p, 'wb').write(d)\" " + f"{folder}/weights.npz"
        )
    elif tamper == "extra-file":
        node.sh(f"echo not part of the bundle > {folder}/notes.txt")
    else:
        node.sh(f"rm {folder}/scaling.json")

    run = transfer_to(node, tmp_path, bundle)
    run.assert_succeeded(changed=True, installed=True, replaced=True)
    assert run.archive_sent
    assert reason in run.result["msg"], run.result["msg"]
    assert_installed(node, tmp_path, bundle)
    assert node.entries() == [bundle.name]  # the replaced copy is gone too


def test_keep_prunes_the_oldest_but_never_protected_ones(node, bundles, trained_store, tmp_path):
    source = bundles / trained_store.model_ids[0]
    parent = tmp_path / "dated"
    dated = {
        f"sbn-b13-2026010{day}": dated_clone(
            source, parent, f"sbn-b13-2026010{day}", f"2026-01-0{day}T00:00:00+00:00"
        )
        for day in range(1, 6)
    }
    ids = sorted(dated)
    for model_id in ids[:4]:  # already there, as earlier transfers left them
        node.put(dated[model_id], f"{STORE}/{model_id}")

    newest = transfer_to(node, tmp_path, dated[ids[4]], keep=3, protect=[ids[0]])
    newest.assert_succeeded()
    # Kept: the new one, the 2 newest others, and the protected oldest one.
    assert newest.result["removed"] == [ids[1]]
    assert node.entries() == [ids[0], ids[2], ids[3], ids[4]]

    # A re-sent old bundle counts as the one installed: it stays, the newest other stays.
    again = transfer_to(node, tmp_path, dated[ids[0]], keep=2)
    again.assert_succeeded(changed=True, transferred=False)  # already intact there: pruning only
    assert again.result["removed"] == [ids[2], ids[3]]
    assert node.entries() == [ids[0], ids[4]]
    copy = node.copy_store(tmp_path / "after")
    assert ModelStore(copy).model_ids() == [ids[0], ids[4]]


def test_check_mode_reports_and_changes_nothing(node, bundles, trained_store, tmp_path):
    source = bundles / trained_store.model_ids[0]
    old = [
        dated_clone(source, tmp_path / "old", f"sbn-old-{day}", f"2025-12-0{day}T00:00:00+00:00")
        for day in (1, 2)
    ]
    for bundle in old:
        node.put(bundle, f"{STORE}/{bundle.name}")
    leftover = f"{STORE}/.staging-sbn-old-3-x1y2z3"
    node.sh(f"mkdir {leftover} && echo partial > {leftover}/weights.npz")
    before = node.snapshot()

    checked = transfer_to(node, tmp_path, source, "--check", keep=2)
    checked.assert_succeeded(changed=True, installed=True, transferred=False)
    assert checked.result["removed"] == ["sbn-old-1"]
    assert checked.result["cleaned"] == [".staging-sbn-old-3-x1y2z3"]
    assert "would be installed" in checked.result["msg"]
    assert not checked.archive_sent
    assert node.snapshot() == before

    done = transfer_to(node, tmp_path, source, keep=2)
    assert done.result["removed"] == ["sbn-old-1"]
    assert done.result["cleaned"] == [".staging-sbn-old-3-x1y2z3"]
    assert node.entries() == sorted([source.name, "sbn-old-2"])

    settled = node.snapshot()
    checked_again = transfer_to(node, tmp_path, source, "--check", keep=2)
    assert checked_again.result["changed"] is False
    assert node.snapshot() == settled


# --- the predictor_deploy role's bundle steps -------------------------------------------------


def test_the_role_brings_the_cloud_hosts_bundle_into_the_node_store(
    containers, bundles, trained_store, tmp_path
):
    """predictor_deploy's own task files (source.yml, store.yml), without the Kubernetes steps:
    the bundle model training left on a remote cloud host is fetched to the controller, verified
    there and installed on the edge node; a second run changes nothing."""
    cloud, edge = containers(), containers()
    bundle = bundles / trained_store.model_ids[0]
    cloud_path = f"/var/lib/edgecast/cloud/bundles/{bundle.name}"
    Node(cloud, tmp_path).put(bundle, cloud_path)
    inventory = tmp_path / "fleet.yml"
    trainer = {**inventory_host(cloud), "model_training_bundle_path": cloud_path}
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "cloud": {"hosts": {"trainer": trainer}},
                        "edge": {"hosts": {"edge-01": inventory_host(edge)}},
                    }
                }
            }
        )
    )
    fetched = tmp_path / "fetched"
    role_tasks = [
        {
            "name": f"Role tasks {tasks}",
            "ansible.builtin.include_role": {"name": "predictor_deploy", "tasks_from": tasks},
        }
        for tasks in ("source.yml", "store.yml")
    ]
    playbook = write_play(
        tmp_path / "role.yml",
        "edge",
        role_tasks,
        name="The role's bundle steps",
        vars={"predictor_deploy_store": STORE, "predictor_deploy_fetch_dir": str(fetched)},
    )
    first = run_playbook(playbook, "-i", str(inventory), timeout=600)
    assert first.changed("edge-01") >= 1, first.tail()
    for path in sorted(bundle.iterdir()):
        assert (fetched / bundle.name / path.name).read_bytes() == path.read_bytes()
    edge_node = Node(edge, inventory)
    assert_installed(edge_node, tmp_path, bundle)
    assert edge_node.sh(f"stat -c %a {STORE}").stdout.strip() == "755"
    # The predictor pods run as uid 10001 and must read every file of the store.
    read_all = f"cat {STORE}/{bundle.name}/* > /dev/null"
    readable = subprocess.run(
        ["docker", "exec", "--user", "10001:10001", edge, "sh", "-c", read_all],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert readable.returncode == 0, readable.stderr

    again = run_playbook(playbook, "-i", str(inventory), timeout=600)
    assert again.changed("edge-01") == 0, again.tail()
    assert edge_node.entries() == [bundle.name]


# --- interrupted and damaged transfers --------------------------------------------------------


def plain_tar(bundle: Path, archive: Path) -> Path:
    """An uncompressed tar of the bundle, manifest first, as the controller orders it."""
    names = [
        "manifest.json",
        *sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json"),
    ]
    with tarfile.open(archive, "w") as tar:
        tar.add(bundle, arcname=bundle.name, recursive=False)
        for name in names:
            tar.add(bundle / name, arcname=f"{bundle.name}/{name}")
    return archive


def store_args(bundle: Path, src: str, **extra: object) -> dict:
    return {
        "store": STORE,
        "model_id": bundle.name,
        "manifest_sha256": manifest_sha256(bundle),
        "src": src,
        **extra,
    }


FIND_FIFO_USERS = r"""
import os, signal, sys
fifo, mode = sys.argv[1], int(sys.argv[2])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == fifo:
                info = open(f"/proc/{pid}/fdinfo/{fd}").read()
                if int(info.split("flags:")[1].split()[0], 8) & 3 == mode:
                    print(pid)
    except OSError:
        pass
"""


def fifo_users(node: Node, fifo: str, mode: int) -> list[int]:
    """Pids in the node holding ``fifo`` open for reading (mode 0) or writing (mode 1)."""
    out = node.sh(f"python3 -c '{FIND_FIFO_USERS}' {fifo} {mode}").stdout
    return sorted({int(pid) for pid in out.split()})


def test_a_run_killed_mid_transfer_leaves_nothing_visible(node, bundles, trained_store, tmp_path):
    """The node module is killed (SIGKILL) while the archive is half read, as a lost connection
    or a reboot would stop it; its staging folder stays behind, invisible, until the next run."""
    bundle = bundles / trained_store.model_ids[0]
    archive = plain_tar(bundle, tmp_path / "bundle.tar")
    node.put(archive, "/tmp/bundle.tar")
    fifo = "/tmp/bundle.fifo"
    node.sh(f"mkfifo {fifo}")
    half = archive.stat().st_size // 2
    # The writer sends half of the archive, then keeps the pipe open: the module blocks reading.
    writer = f"exec 3>{fifo}; head -c {half} /tmp/bundle.tar >&3; exec sleep 600"
    subprocess.run(["docker", "exec", "-d", node.name, "sh", "-c", writer], check=True)
    saved = tmp_path / "killed.json"
    playbook = write_play(
        tmp_path / "killed.yml",
        "node",
        run_and_save("edgecast_bundle_store", store_args(bundle, fifo), saved),
        name="Install from a pipe",
    )
    running = subprocess.Popen(
        [str(BIN / "ansible-playbook"), "-i", str(node.inventory), str(playbook)],
        cwd=REPO,
        env=ansible_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        staged = ""
        while time.monotonic() < deadline:
            listing = node.sh(f"ls -A {STORE} 2>/dev/null", check=False).stdout.split()
            staging = [name for name in listing if name.startswith(".staging-")]
            if staging and node.sh(f"ls {STORE}/{staging[0]}").stdout.strip():
                staged = staging[0]
                readers = fifo_users(node, fifo, 0)
                if readers:
                    break
            time.sleep(0.3)
        assert staged, "the module never started unpacking"
        time.sleep(1)  # it has read all the pipe holds and waits for more
        node.sh(f"kill -KILL {' '.join(map(str, fifo_users(node, fifo, 0)))}")
        running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
        writers = fifo_users(node, fifo, 1)
        if writers:
            node.sh(f"kill {' '.join(map(str, writers))}", check=False)
    killed = json.loads(saved.read_text())
    assert killed.get("failed"), killed

    # A half-written staging folder is left: readers of the store do not see it.
    assert node.entries() == [staged]
    assert node.sh(f"ls -A {STORE}/{staged}").stdout.split(), "the staging folder is empty"
    copy = node.copy_store(tmp_path / "interrupted")
    assert ModelStore(copy).model_ids() == []
    with pytest.raises(LookupError):
        ModelStore(copy).path_of(bundle.name)

    # The next run removes it and installs the bundle.
    run = transfer_to(node, tmp_path, bundle)
    run.assert_succeeded()
    assert run.result["cleaned"] == [staged]
    assert node.entries() == [bundle.name]
    assert_installed(node, tmp_path, bundle)


def test_leftovers_of_interrupted_runs_are_invisible_and_cleaned(
    node, bundles, trained_store, tmp_path
):
    bundle = bundles / trained_store.model_ids[0]
    other = bundles / trained_store.model_ids[1]
    # As runs killed at different points leave them: a staging copy with a truncated file, a
    # bundle renamed aside while being replaced, and the half-sent archive of a transfer.
    staging = tmp_path / f".staging-{bundle.name}-dead01"
    staging.mkdir()
    (staging / "manifest.json").write_bytes((bundle / "manifest.json").read_bytes())
    (staging / "weights.npz").write_bytes((bundle / "weights.npz").read_bytes()[:1000])
    node.put(staging, f"{STORE}/{staging.name}")
    node.put(other, f"{STORE}/.replaced-{other.name}-dead02")
    archive = plain_tar(bundle, tmp_path / "bundle.tar")
    (tmp_path / "half.tar").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    node.put(tmp_path / "half.tar", "/root/.ansible/tmp/ansible-tmp-1-dead/bundle.tar")

    copy = node.copy_store(tmp_path / "before")
    assert ModelStore(copy).model_ids() == []

    run = transfer_to(node, tmp_path, bundle)
    run.assert_succeeded()
    assert sorted(run.result["cleaned"]) == sorted([staging.name, f".replaced-{other.name}-dead02"])
    assert node.entries() == [bundle.name]
    assert_installed(node, tmp_path, bundle)


def corrupt_in_transfer(bundle: Path, archive: Path) -> Path:
    """A full archive whose weights.npz has one byte changed on the way."""
    data = bytearray(plain_tar(bundle, archive).read_bytes())
    header = data.find(f"{bundle.name}/weights.npz".encode())  # the member's 512-byte header
    assert header > 0 and header % 512 == 0
    data[header + 512 + 200] ^= 0xFF
    archive.write_bytes(bytes(data))
    return archive


def other_manifest(bundle: Path, archive: Path) -> Path:
    """A consistent bundle, but with another manifest than the one verified (created changed)."""
    copy = archive.parent / "other" / bundle.name
    copy.parent.mkdir()
    shutil.copytree(bundle, copy)
    manifest = read_manifest(copy)
    manifest["created"] = "1999-01-01T00:00:00+00:00"
    write_manifest(copy, manifest)
    return plain_tar(copy, archive)


def truncated(bundle: Path, archive: Path) -> Path:
    data = plain_tar(bundle, archive).read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    return archive


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (truncated, "truncated"),
        (corrupt_in_transfer, "weights.npz: sha256"),
        (other_manifest, "not the bundle that was checked"),
    ],
)
def test_the_node_refuses_a_damaged_archive(node, bundles, trained_store, tmp_path, damage, reason):
    bundle = bundles / trained_store.model_ids[0]
    node.put(damage(bundle, tmp_path / "bundle.tar"), "/tmp/bundle.tar")
    run = play(node, tmp_path, "edgecast_bundle_store", store_args(bundle, "/tmp/bundle.tar"))
    assert run.result["failed"] is True
    assert reason in run.result["msg"], run.result["msg"]
    assert node.entries() == []  # no staging folder left, no bundle


# --- the controller's half, without a node (the node module's own rules: tests/unit) -------


def test_a_folder_changed_after_its_check_is_not_packed(bundles, trained_store, tmp_path):
    bundle = clone_bundle(bundles / trained_store.model_ids[0], tmp_path / "b", "sbn-changing")
    verified = transfer.verify(bundle)
    assert verified.archive is None
    assert verified.manifest_sha256 == manifest_sha256(bundle)
    archive = transfer.pack(verified, tmp_path)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    others = sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json")
    assert names == [bundle.name, *(f"{bundle.name}/{n}" for n in ["manifest.json", *others])]
    flip_weights_byte(bundle)
    with pytest.raises(transfer.TransferError, match=r"weights\.npz changed after it was verified"):
        transfer.pack(verified, tmp_path)


def test_a_tar_is_verified_and_sent_as_it_is(bundles, trained_store, tmp_path):
    bundle = bundles / trained_store.model_ids[0]
    archive = pack_bundle(bundle, tmp_path / "bundle.tar.gz")
    verified = transfer.verify(archive)
    assert verified.model_id == bundle.name
    assert verified.manifest_sha256 == manifest_sha256(bundle)
    assert transfer.pack(verified, tmp_path) == archive


def test_the_controller_refuses_bad_options():
    with pytest.raises(transfer.TransferError, match="keep must be at least 1"):
        transfer.TransferOptions(keep=0).check()
    with pytest.raises(transfer.TransferError, match="absolute"):
        transfer.TransferOptions(store="models").check()
    with pytest.raises(transfer.TransferError, match="not model ids"):
        transfer.TransferOptions(protect=("../etc",)).check()


# The node runs Ubuntu 20.04's Python 3.8: no newer syntax, and no newer standard library API.
NEWER_APIS = {
    "removeprefix",
    "removesuffix",
    "is_relative_to",
    "with_stem",
    "cache",
    "lcm",
    "to_thread",
    "zoneinfo",
    "graphlib",
    "tomllib",
    "pairwise",
    "batched",
    "bit_count",
}


@pytest.mark.parametrize(
    ("path", "ansible_imports"),
    [
        (MODULE_PATH, {"ansible.module_utils.basic", "ansible.module_utils.edgecast_store_rules"}),
        (RULES_PATH, set()),  # imported by the predictor as well, where Ansible is not
    ],
    ids=["module", "module_utils"],
)
def test_the_node_code_is_python_3_8_code(path, ansible_imports):
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=(3, 8))
    # Annotations such as ``dict[str, int]`` or ``X | None`` are never evaluated on 3.8.
    assert any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not used & NEWER_APIS, used & NEWER_APIS
    assert not imported & NEWER_APIS, imported & NEWER_APIS
    # Only the standard library and Ansible's module_utils (shipped with the module) are used.
    assert imported - set(sys.stdlib_module_names) <= {"ansible"}, imported
    module_utils = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ansible")
    }
    assert module_utils == ansible_imports
    # No match statements or parenthesised context managers slipped past the parser.
    assert not any(type(node).__name__ == "Match" for node in ast.walk(tree))
    # zip(strict=...) is 3.10.
    assert not any(
        isinstance(node, ast.keyword) and node.arg == "strict" for node in ast.walk(tree)
    )
