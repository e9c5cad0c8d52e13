"""Render a node's predictor Deployment and Service from the shared Kubernetes templates.

The pod switch calls :func:`render` for the first deployment (the predictor_deploy role) and for
every rollout, so both produce the same objects and the same names; the ``edgecast_manifests``
lookup renders through it too. Names are computed here, once, rather than in two template
languages.

The templates are package data (``edgecast/deploy/templates/k8s``; the checkout's
``templates/k8s`` links there for the roles), so an installed package renders without a checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2
import yaml

APP_NAME = "edgecast-predictor"
NODE_LABEL = "edgecast.io/node"
MODEL_LABEL = "edgecast.io/model"
MODEL_ID_ANNOTATION = "edgecast.io/model-id"
# The PredictorSpec fields but model_id, as JSON: a rollout starts the next model's predictor
# from the serving Deployment's.
SPEC_ANNOTATION = "edgecast.io/spec"

# Fields added after Deployments were first recorded: left out of the annotation while unset, so
# that a Deployment recorded before them still reads as the spec it was made from.
_OMITTED_WHEN_UNSET = frozenset({"shadow_model_id", "helm_release"})
# What Helm requires of an object before a release may adopt it (a pod switch creates the next
# model's Deployment outside Helm; the chart's next upgrade then owns it without a conflict).
HELM_MANAGED_BY = "Helm"
HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"
HELM_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"
_RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")
_PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


class ManifestError(ValueError):
    """The spec cannot make valid Kubernetes objects (the message says which field)."""


def template_dir() -> Path:
    """Where the templates are: ``EDGECAST_TEMPLATES`` or the package's own."""
    return Path(os.environ.get("EDGECAST_TEMPLATES", _PACKAGE_TEMPLATES))


def _short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_label(text: str, limit: int) -> str:
    """A DNS-1123 label for ``text``; a hash suffix keeps distinct inputs distinct."""
    slug = _NOT_DNS.sub("-", text.lower()).strip("-")
    if slug == text and len(slug) <= limit:
        return slug
    head = slug[: limit - 7].strip("-") or "n"
    return f"{head}-{_short_hash(text, 6)}"


def model_label(model_id: str) -> str:
    """``model_id`` itself when it is a valid label value, else a stable stand-in."""
    if _LABEL_VALUE.match(model_id):
        return model_id
    return f"{dns_label(model_id, 52)}-{_short_hash(model_id, 10)}"[:63].strip("-_.")


@dataclass(frozen=True)
class PredictorSpec:
    """Everything that decides a node's predictor objects."""

    node: str
    model_id: str
    image: str
    namespace: str = "edgecast"
    service_account: str = "edgecast-predictor"
    store_host_path: str = "/var/lib/edgecast/models"
    runtime: str = "litert"
    port: int = 8080
    threads: int = 4
    image_pull_policy: str = "Never"
    prestop_seconds: int = 5
    shutdown_delay_seconds: float = 2.0
    drain_timeout_seconds: float = 20.0
    termination_grace_seconds: int = 45
    startup_seconds: int = 300
    service_type: str = "ClusterIP"
    service_port: int = 8080
    node_port: int | None = None
    admin_token_secret: str | None = None
    public_key_configmap: str | None = None
    # The model the predictor scores in shadow (the one a pod switch replaced; from the store).
    shadow_model_id: str | None = None
    # The Helm release that owns the node's objects (charts/edgecast-predictor), if any: the
    # objects then carry Helm's ownership label and annotations, and so does the Deployment of
    # every model a pod switch starts, so that `helm upgrade` adopts it instead of failing.
    helm_release: str | None = None
    resources: dict[str, Any] = field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "1Gi"},
        }
    )

    def check(self) -> None:
        """Refuse a spec that would make invalid or unsafe objects."""
        for name in ("node", "model_id", "image", "namespace", "service_account"):
            if not getattr(self, name):
                raise ManifestError(f"{name} must not be empty")
        if dns_label(self.namespace, 63) != self.namespace:
            raise ManifestError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if self.runtime not in ("litert", "keras"):
            raise ManifestError(f"runtime must be litert or keras, not {self.runtime!r}")
        if self.service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise ManifestError(f"service_type {self.service_type!r} is not supported")
        if self.node_port is not None and self.service_type == "ClusterIP":
            raise ManifestError("node_port needs service_type NodePort or LoadBalancer")
        if self.shadow_model_id == self.model_id:
            raise ManifestError("shadow_model_id must name another model than model_id")
        if self.helm_release is not None and not _RELEASE_NAME.match(self.helm_release):
            raise ManifestError(f"helm_release {self.helm_release!r} is not a Helm release name")
        if not self.store_host_path.startswith("/"):
            raise ManifestError("store_host_path must be absolute")
        needed = self.prestop_seconds + self.shutdown_delay_seconds + self.drain_timeout_seconds
        if self.termination_grace_seconds <= needed:
            raise ManifestError(
                f"termination_grace_seconds ({self.termination_grace_seconds}) must exceed the "
                f"preStop delay, shutdown delay and drain timeout together ({needed:g})"
            )


@dataclass(frozen=True)
class PredictorNames:
    """The names and labels of a node's predictor objects for one model."""

    deployment: str
    service: str
    labels: dict[str, str]
    selector: dict[str, str]
    service_labels: dict[str, str]


def node_key(node: str) -> str:
    """The node's name as its objects' names and ``edgecast.io/node`` label carry it."""
    return dns_label(node, 24)


def service_name(node: str) -> str:
    """The node's predictor Service: one per node, whatever model it selects."""
    return f"predictor-{node_key(node)}"


def names_for(node: str, model_id: str, *, managed_by: str = "edgecast") -> PredictorNames:
    key = node_key(node)
    common = {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/part-of": "edgecast",
        "app.kubernetes.io/managed-by": managed_by,
        NODE_LABEL: key,
    }
    selector = {
        "app.kubernetes.io/name": APP_NAME,
        NODE_LABEL: key,
        MODEL_LABEL: model_label(model_id),
    }
    return PredictorNames(
        deployment=f"predictor-{key}-{_short_hash(model_id, 10)}",
        service=service_name(node),
        labels={**common, MODEL_LABEL: model_label(model_id)},
        selector=selector,
        service_labels=common,
    )


def names_of(spec: PredictorSpec) -> PredictorNames:
    """The names and labels of ``spec``'s objects (Helm's ownership label under a release)."""
    managed_by = HELM_MANAGED_BY if spec.helm_release else "edgecast"
    return names_for(spec.node, spec.model_id, managed_by=managed_by)


_FLOAT_FIELDS = frozenset(f.name for f in fields(PredictorSpec) if f.type == "float")


def recorded_spec(annotation: str, model_id: str) -> PredictorSpec:
    """The spec a Deployment made by :func:`render` records in its ``edgecast.io/spec``."""
    try:
        recorded = json.loads(annotation)
    except ValueError as exc:
        raise ManifestError(f"{SPEC_ANNOTATION} is not JSON ({exc})") from exc
    if not isinstance(recorded, dict):
        raise ManifestError(f"{SPEC_ANNOTATION} is not a JSON object")
    # JSON writers that drop a whole float's ".0" (Helm's) record 2.0 as 2: read it back as 2.0,
    # so that the next model's Deployment renders the same arguments.
    recorded = {
        k: float(v) if k in _FLOAT_FIELDS and isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in recorded.items()
    }
    try:
        spec = PredictorSpec(**{**recorded, "model_id": model_id})
    except TypeError as exc:
        raise ManifestError(
            f"{SPEC_ANNOTATION} does not hold PredictorSpec fields ({exc})"
        ) from exc
    spec.check()
    return spec


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def render(spec: PredictorSpec, templates: Path | None = None) -> dict[str, dict[str, Any]]:
    """The Deployment and Service of ``spec`` as API objects, keyed ``deployment``/``service``."""
    spec.check()
    names = names_of(spec)
    values = asdict(spec)
    context = {
        **values,
        "spec_json": json.dumps(
            {
                k: v
                for k, v in values.items()
                if k != "model_id" and not (k in _OMITTED_WHEN_UNSET and v is None)
            },
            sort_keys=True,
        ),
        "deployment_name": names.deployment,
        "service_name": names.service,
        "labels": names.labels,
        "selector": names.selector,
        "service_labels": names.service_labels,
    }
    env = _environment(templates or template_dir())
    out = {}
    for kind in ("deployment", "service"):
        text = env.get_template(f"k8s/predictor-{kind}.yaml.j2").render(context)
        out[kind] = yaml.safe_load(text)
    return out


def render_rbac(
    namespace: str,
    predictor_service_account: str,
    rollout_service_account: str,
    templates: Path | None = None,
) -> list[dict[str, Any]]:
    """The namespace's ServiceAccounts, the rollout's Role and its RoleBinding, as API objects.

    The predictor_deploy role renders the same template through Ansible; this is for the code
    that must agree with it, such as a fake API server granting exactly the Role's rules.
    """
    context = {
        "namespace": namespace,
        "predictor_service_account": predictor_service_account,
        "rollout_service_account": rollout_service_account,
    }
    text = (
        _environment(templates or template_dir()).get_template("k8s/rbac.yaml.j2").render(context)
    )
    return [obj for obj in yaml.safe_load_all(text) if obj]
