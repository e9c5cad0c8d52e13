"""A fleet of edge nodes on this machine, for continuous-training runs on the embedded default.

Each node is an inventory host of the local connection with its own ``edgecast_var`` (model
store, pid file, admin token) and port: a real predictor started by ``playbooks/serve-local.yml``
(LiteRT runtime, shadow scoring on). The cloud host is ``localhost``, with its own store. A node
can be made unreachable from the controller: its inventory entry then says SSH to a port of
127.0.0.1 that nothing listens on, while its predictor keeps running, as a node behind a broken
link does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import requests

from .cache import cached_dir, content_key
from .paths import DATA, REPO
from .playbook import PlaybookRun, run_playbook
from .ports import free_port
from .predictor import edgecast

SHIPPED = (DATA / "electricity" / "b13" / "2016.csv").read_text().splitlines(keepends=True)
HEADER, ROWS = SHIPPED[0], SHIPPED[1:]
FIRST_DAYS = 182  # the data folder holds b13 up to 2016-07-01
TRAINED_UNTIL = "2016-07-01"


def data_folder(root: Path) -> Path:
    """A data folder of b13's first half of 2016, and the shipped weather."""
    data = root / "data"
    shutil.copytree(DATA / "weather", data / "weather")
    (data / "electricity" / "b13").mkdir(parents=True)
    (data / "electricity" / "b13" / "2016.csv").write_text(
        HEADER + "".join(ROWS[: 24 * FIRST_DAYS])
    )
    return data


def small_bundles(seeds: Iterable[int]) -> list[Path]:
    """One small b13 bundle per seed, trained on b13 up to 2016-07-01 (one epoch: worse than
    seasonal naive, which a rollout refuses unless ``rollout_allow_worse_than_naive`` is set),
    in the order of the seeds, so the newest last. Cached as ``trained_store`` is; copy them
    before use."""
    seeds = list(seeds)
    package = REPO / "app" / "edgecast"
    inputs = [*sorted(package.glob("*.py")), *sorted((package / "bundle").glob("*.py"))]
    key = content_key(
        [*inputs, REPO / "requirements.txt", REPO / "data"], "small", *map(str, seeds)
    )

    def train(out: Path) -> None:
        data = data_folder(out / ".data")
        for seed in seeds:
            edgecast(
                "train", "--building", "b13", "--data-dir", str(data), "--until", TRAINED_UNTIL,
                "--epochs", "1", "--seed", str(seed), "--out", str(out / str(seed)), "--quiet",
            )  # fmt: skip
        shutil.rmtree(out / ".data")

    cached = cached_dir("small-bundles", key, train)
    return [next((cached / str(seed)).iterdir()) for seed in seeds]


@dataclass
class LocalFleet:
    root: Path
    data: Path
    nodes: dict[str, int]  # name: predictor port
    urls: dict[str, str] = field(default_factory=dict)  # the controller's URL, when not direct
    offline: set[str] = field(default_factory=set)

    @property
    def inventory(self) -> Path:
        return self.root / "inventory"

    @property
    def cloud_store(self) -> Path:
        return self.root / "cloud" / "models"

    def var(self, name: str) -> Path:
        return self.root / name

    def store(self, name: str) -> Path:
        return self.var(name) / "models"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.nodes[name]}"

    def write_inventory(self) -> None:
        """The inventory as things stand: offline nodes behind SSH to a closed port, nodes with
        another URL for the controller read and switched there."""
        group_vars = self.inventory / "group_vars"
        group_vars.mkdir(parents=True, exist_ok=True)
        local = (REPO / "inventory/local/group_vars/all.yml").read_text()
        checkout = 'edgecast_checkout: "{{ inventory_dir | dirname | dirname }}"'
        assert checkout in local
        (group_vars / "all.yml").write_text(local.replace(checkout, f"edgecast_checkout: {REPO}"))
        edge = {}
        for name, port in self.nodes.items():
            host: dict[str, object] = {
                "edgecast_var": str(self.var(name)),
                "local_runtime_port": port,
                "ansible_connection": "local",
            }
            if name in self.urls:
                host["model_rollout_predictor_url"] = self.urls[name]
            if name in self.offline:
                host |= {"ansible_connection": "ssh", "ansible_host": "127.0.0.1",
                         "ansible_port": free_port(), "ansible_user": "edgecast"}  # fmt: skip
            edge[name] = host
        hosts = {
            "all": {
                "vars": {
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    "ansible_become": False,
                    "edgecast_deployment": "local",
                    "local_runtime_runtime": "litert",
                    "local_runtime_query_building": "",
                    "model_training_data_dir": str(self.data),
                },
                "children": {
                    "cloud": {
                        "hosts": {
                            "localhost": {
                                "ansible_connection": "local",
                                "edgecast_var": str(self.root / "cloud"),
                            }
                        }
                    },
                    "edge": {"hosts": edge},
                },
            }
        }
        (self.inventory / "hosts.yml").write_text(json.dumps(hosts, indent=1))

    def serve(self, *names: str) -> PlaybookRun:
        """Starts (or starts again) the predictors of ``names`` (all nodes when none)."""
        self.write_inventory()
        limit = ["--limit", ",".join(names)] if names else []
        return run_playbook("playbooks/serve-local.yml", "-i", str(self.inventory), *limit)

    def cycle(self, *args: str) -> PlaybookRun:
        """One ``continuous-training.yml`` run on the fleet as the inventory has it now."""
        self.write_inventory()
        return run_playbook(
            "continuous-training.yml", "-i", str(self.inventory), *args, check=False
        )

    def model(self, name: str) -> dict:
        return requests.get(f"{self.url(name)}/v1/model", timeout=10).json()

    def serving(self) -> dict[str, str]:
        return {name: self.model(name)["model_id"] for name in self.nodes}

    def pid(self, name: str) -> int:
        return int((self.var(name) / "run" / "predictor.pid").read_text())

    def kill(self, name: str) -> None:
        """Ends the node's predictor at once, as a crash or a lost power supply does."""
        os.kill(self.pid(name), signal.SIGKILL)

    def stop(self) -> None:
        for name in self.nodes:
            pid_file = self.var(name) / "run" / "predictor.pid"
            edgecast("service", "stop", "--pid-file", str(pid_file), check=False)


def start_local_fleet(root: Path, names: Iterable[str], bundle: Path) -> LocalFleet:
    """Nodes ``names`` serving ``bundle`` (in each node's own store), the cloud store empty."""
    fleet = LocalFleet(root, data_folder(root), {name: free_port() for name in names})
    fleet.cloud_store.mkdir(parents=True)
    for name in fleet.nodes:
        shutil.copytree(bundle, fleet.store(name) / bundle.name)
    fleet.serve()
    return fleet


def hourly_body(
    frame: pd.Series, hour: pd.Timestamp, window: int = 600, series: str = "default"
) -> dict:
    """A request as a client sends it at ``hour``: the last ``window`` hours of real load."""
    loads = frame.loc[:hour].iloc[-window:]
    return {
        "loads": [float(v) for v in loads],
        "last_timestamp": loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "series": series,
    }
