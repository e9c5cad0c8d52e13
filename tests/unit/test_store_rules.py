"""The rules of the model store (edgecast.store_rules), shared by predictor and node module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecast import store_rules
from edgecast.bundle import BundleError
from edgecast.store import ModelStore
from edgecast_harness.paths import REPO

NODE_COPY = REPO / "plugins" / "module_utils" / "edgecast_store_rules.py"


def bundle(store: Path, model_id: str, created: object = "2026-01-01T00:00:00+00:00") -> Path:
    """A folder with a manifest: all the store's rules look at."""
    folder = store / model_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"model_id": model_id, "created": created}))
    return folder


def test_the_node_module_ships_the_package_file_itself():
    assert NODE_COPY.is_symlink()
    assert NODE_COPY.resolve() == Path(store_rules.__file__).resolve()


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("sbn-b13-20261127-034844-a479dd58", True),
        ("m1", True),
        ("A.b_c-9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        (".staging-m1-abc", False),
        ("-m1", False),
        ("m1/../etc", False),
        ("..", False),
        ("", False),
        (None, False),
        (7, False),
    ],
)
def test_model_ids_are_safe_folder_names(name, valid):
    assert store_rules.is_model_id(name) is valid


@pytest.mark.parametrize(
    ("store", "keep", "protect", "error"),
    [
        ("/srv/models", 1, [], ""),
        ("/srv/models", 3, ["m1", "m2"], ""),
        ("models", 3, [], "store must be an absolute path on the node, not 'models'"),
        ("", 3, [], "absolute path"),
        ("/srv/models", 0, [], "keep must be at least 1 (the bundle being installed), not 0"),
        ("/srv/models", 3, ["m1", "../etc", ""], "not model ids: ['../etc', '']"),
    ],
)
def test_option_errors(store, keep, protect, error):
    found = store_rules.option_error(store, keep, protect)
    assert (error in found) if error else found == ""


def test_bundles_are_listed_oldest_first_by_created_then_name(tmp_path):
    bundle(tmp_path, "c", "2026-01-02")
    bundle(tmp_path, "b", "2026-01-03")
    bundle(tmp_path, "a", "2026-01-02")
    bundle(tmp_path, "no-created", None).joinpath("manifest.json").write_text('{"model_id": 1}')
    bundle(tmp_path, "not-json").joinpath("manifest.json").write_text("{")
    bundle(tmp_path, "a-list").joinpath("manifest.json").write_text("[1, 2]")
    assert store_rules.list_bundles(str(tmp_path)) == [
        ("", "a-list"),
        ("", "no-created"),
        ("", "not-json"),
        ("2026-01-02", "a"),
        ("2026-01-02", "c"),
        ("2026-01-03", "b"),
    ]


def test_only_model_id_folders_with_a_manifest_are_bundles(tmp_path):
    bundle(tmp_path, "m1")
    bundle(tmp_path, ".staging-m2-x1")
    bundle(tmp_path, ".replaced-m3-x2")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    assert [name for _, name in store_rules.list_bundles(str(tmp_path))] == ["m1"]
    assert store_rules.leftovers(str(tmp_path)) == [".replaced-m3-x2", ".staging-m2-x1"]


def test_a_store_that_is_not_there_is_empty(tmp_path):
    assert store_rules.list_bundles(str(tmp_path / "missing")) == []
    assert store_rules.leftovers(str(tmp_path / "missing")) == []


def test_a_manifest_that_is_a_link_or_too_large_gives_no_created(tmp_path):
    real = bundle(tmp_path / "elsewhere", "m0", "2030-01-01")
    linked = tmp_path / "store" / "m1"
    linked.mkdir(parents=True)
    (linked / "manifest.json").symlink_to(real / "manifest.json")
    large = bundle(tmp_path / "store", "m2", "2030-01-01")
    large.joinpath("manifest.json").write_text(
        json.dumps({"created": "2030-01-01", "pad": "x" * store_rules.MAX_MANIFEST_BYTES})
    )
    assert store_rules.manifest_created(str(linked)) == ""
    assert store_rules.manifest_created(str(large)) == ""
    assert store_rules.manifest_created(str(real)) == "2030-01-01"


def test_read_regular_refuses_links_and_large_files(tmp_path):
    target = tmp_path / "data"
    target.write_bytes(b"12345")
    (tmp_path / "link").symlink_to(target)
    assert store_rules.read_regular(str(target), 5) == b"12345"
    with pytest.raises(store_rules.StoreError, match="larger than 4 bytes"):
        store_rules.read_regular(str(target), 4)
    with pytest.raises(store_rules.StoreError, match="is a symbolic link"):
        store_rules.read_regular(str(tmp_path / "link"), 5)
    with pytest.raises(store_rules.StoreError, match="not a regular file"):
        store_rules.read_regular(str(tmp_path), 5)
    with pytest.raises(FileNotFoundError):
        store_rules.read_regular(str(tmp_path / "missing"), 5)


@pytest.mark.parametrize(
    ("keep", "protect", "removed"),
    [
        (3, set(), ["a", "b"]),  # new "n" + the 2 newest others (c, d)
        (2, set(), ["a", "b", "c"]),
        (1, set(), ["a", "b", "c", "d"]),
        (1, {"b"}, ["a", "c", "d"]),
        (2, {"d"}, ["a", "b", "c"]),  # protecting the newest other keeps no extra one
        (10, set(), []),
    ],
)
def test_prune_plan(keep, protect, removed):
    bundles = [("2026-01-01", "a"), ("2026-01-02", "b"), ("2026-01-03", "c"), ("2026-01-04", "d")]
    plan = store_rules.prune_plan([*bundles, ("2000-01-01", "n")], keep, "n", protect)
    assert plan == removed


def test_the_predictor_reads_the_store_by_the_same_rules(tmp_path):
    bundle(tmp_path, "m-new", "2026-02-01")
    bundle(tmp_path, "m-old", "2026-01-01")
    bundle(tmp_path, ".staging-m-newest-x1", "2027-01-01")
    store = ModelStore(tmp_path)
    assert store.model_ids() == [name for _, name in store_rules.list_bundles(str(tmp_path))]
    assert store.model_ids() == ["m-old", "m-new"]
    assert store.latest() == "m-new"
    assert store.path_of("m-old") == tmp_path / "m-old"
    with pytest.raises(BundleError, match="not a valid model_id"):
        store.path_of(".staging-m-newest-x1")
    with pytest.raises(LookupError, match="not in the model store"):
        store.path_of("m-gone")
    with pytest.raises(LookupError, match="holds no bundle"):
        ModelStore(tmp_path / "empty").latest()


def test_the_rules_file_runs_on_the_standard_library_alone(tmp_path):
    """As on the node: no site-packages (so no edgecast, no Ansible), only the file itself."""
    bundle(tmp_path, "m1")
    script = (
        "import runpy, sys; rules = runpy.run_path(sys.argv[1]); "
        "print(rules['list_bundles'](sys.argv[2]))"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(NODE_COPY), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[('2026-01-01T00:00:00+00:00', 'm1')]"
