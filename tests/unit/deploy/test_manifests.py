"""The Kubernetes templates travel with the package, and the fake API grants the shipped Role."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import edgecast.deploy
from edgecast.deploy.manifests import (
    ManifestError,
    PredictorSpec,
    recorded_spec,
    render,
    render_rbac,
    template_dir,
)
from edgecast_harness.fake_kube_api import rollout_role
from edgecast_harness.paths import REPO

PACKAGE = Path(edgecast.deploy.__file__).parent


def test_the_templates_are_package_data():
    """Every template is under the package and named by its package data, so an installed
    (not editable) package renders without a checkout."""
    pyproject = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["edgecast.deploy"]
    shipped = {p for pattern in patterns for p in PACKAGE.glob(pattern)}
    templates = {p for p in (PACKAGE / "templates").rglob("*") if p.is_file()}
    assert templates, "no templates in the package"
    assert templates <= shipped
    assert template_dir() == PACKAGE / "templates"


def test_the_checkouts_templates_folder_is_the_packages():
    """The roles read ``templates/k8s`` of the checkout; it is the package's own folder."""
    assert (REPO / "templates" / "k8s").resolve() == (PACKAGE / "templates" / "k8s").resolve()


def test_the_identities_of_the_namespace():
    objects = render_rbac("site-a", "site-a-predictor", "site-a-rollout")

    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "site-a-predictor"),
        ("ServiceAccount", "site-a-rollout"),
        ("Role", "site-a-rollout"),
        ("RoleBinding", "site-a-rollout"),
    ]
    assert {o["metadata"]["namespace"] for o in objects} == {"site-a"}


def test_the_fake_api_grants_the_rules_of_the_shipped_role():
    granted = rollout_role("edgecast", "edgecast-rollout")

    assert granted[("", "services")] == {"get", "list", "watch", "create", "patch"}
    assert granted[("", "pods/proxy")] == granted[("", "services/proxy")] == {"get"}
    assert ("", "nodes") not in granted
    assert "delete" not in granted[("", "services")]


def test_a_predictor_after_a_switch_scores_the_model_it_replaced_in_shadow():
    spec = PredictorSpec(node="edge-1", model_id="sbn-new", image="i:1", shadow_model_id="sbn-old")
    deployment = render(spec)["deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--shadow-model-id") + 1] == "sbn-old"
    annotation = deployment["metadata"]["annotations"]["edgecast.io/spec"]
    assert recorded_spec(annotation, "sbn-new").shadow_model_id == "sbn-old"
    plain = render(PredictorSpec(node="edge-1", model_id="sbn-new", image="i:1"))["deployment"]
    assert "--shadow-model-id" not in plain["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_model_cannot_shadow_itself():
    with pytest.raises(ManifestError, match="another model"):
        PredictorSpec(node="edge-1", model_id="sbn-a", image="i:1", shadow_model_id="sbn-a").check()
