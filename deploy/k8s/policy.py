#!/usr/bin/env python3
"""The rules every rendered overlay of deploy/k8s must keep (docs/kubernetes.md).

The schema validator (kubernetes-validate) proves each object is well formed;
these rules prove the deployment is the one we mean: probes, resources and a
locked-down security context on every container, a PodDisruptionBudget for
every prod Deployment, a default-deny NetworkPolicy in every namespace,
placeholders only in Secrets, and the image names the build produces.

    policy.py OVERLAY RENDERED.yaml   (OVERLAY: dev or prod; exit 1 on any violation)

deploy/k8s/test_policy.py runs it on every overlay and on broken copies.
"""

import base64
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker" / "compose.yaml"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
# What a Secret may hold: the *-change-me placeholders of .env, and account
# names (not secret: they are in the ConfigMap too).
PLACEHOLDER_SUFFIX = "change-me"
NAME_KEYS = {"username"}


def built_images():
    """The images the build makes for the three services: the `image:` of
    every compose service built from the binaries (deploy/docker/compose.yaml)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    return {
        s["image"]
        for s in compose["services"].values()
        if "build" in s and "dist" in str(s["build"].get("context", ""))
    }


def image_name(image):
    """`name` of `name:tag` or `name@digest` (no registry host is expected)."""
    return image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def load(text):
    return [d for d in yaml.safe_load_all(text) if d]


def _name(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _container_rules(where, c, pod_sc, init):
    out = []
    sc = c.get("securityContext") or {}
    if not init:
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                out.append(f"{where}: no {probe}")
        ready = (c.get("readinessProbe") or {}).get("httpGet", {}).get("path")
        live = (c.get("livenessProbe") or {}).get("httpGet", {}).get("path")
        if c.get("readinessProbe") and ready != "/ready":
            out.append(f"{where}: readinessProbe is not GET /ready")
        if c.get("livenessProbe") and live != "/health":
            out.append(f"{where}: livenessProbe is not GET /health")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for what in ("cpu", "memory"):
            if not (res.get(kind) or {}).get(what):
                out.append(f"{where}: no resources.{kind}.{what}")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if non_root is not True:
        out.append(f"{where}: runAsNonRoot is not true")
    if uid == 0:
        out.append(f"{where}: runAsUser is 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        out.append(f"{where}: privileged")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        out.append(f"{where}: capabilities.drop lacks ALL")
    if (sc.get("capabilities") or {}).get("add"):
        out.append(f"{where}: capabilities.add is not empty")
    return out


def _pod_spec(doc):
    spec = doc.get("spec") or {}
    if doc["kind"] == "Job":
        return spec["template"]["spec"], spec["template"]["metadata"].get("labels", {})
    tmpl = spec.get("template") or {}
    return tmpl.get("spec") or {}, (tmpl.get("metadata") or {}).get("labels", {})


def _selects(selector, labels):
    want = (selector or {}).get("matchLabels") or {}
    return bool(want) and all(labels.get(k) == v for k, v in want.items())


def _is_default_deny(doc):
    spec = doc.get("spec") or {}
    return (
        spec.get("podSelector") in ({}, None)
        and set(spec.get("policyTypes") or []) >= {"Ingress", "Egress"}
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def violations(overlay, docs, images=None):
    images = built_images() if images is None else images
    out = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    # Containers: probes, resources, security context, images.
    for d in docs:
        if d["kind"] not in WORKLOADS:
            continue
        pod, _ = _pod_spec(d)
        pod_sc = pod.get("securityContext") or {}
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            out.append(f"{_name(d)}: shares a host namespace")
        for key, init in (("containers", False), ("initContainers", True)):
            for c in pod.get(key) or []:
                where = f"{_name(d)} container {c.get('name')}"
                out += _container_rules(where, c, pod_sc, init)
                if image_name(c.get("image", "")) not in images:
                    out.append(
                        f"{where}: image {c.get('image')!r} is not one the build makes "
                        f"({', '.join(sorted(images))})"
                    )
        if not pod.get("containers"):
            out.append(f"{_name(d)}: no containers")

    # Every namespace has a default-deny policy.
    namespaces = {d["metadata"]["name"] for d in by_kind.get("Namespace", [])}
    namespaces |= {
        d["metadata"]["namespace"]
        for d in docs
        if d["kind"] != "Namespace" and d["metadata"].get("namespace")
    }
    if not namespaces:
        out.append("no namespace is set on the objects")
    for ns in sorted(namespaces):
        if not any(
            _is_default_deny(p) and p["metadata"].get("namespace") == ns
            for p in by_kind.get("NetworkPolicy", [])
        ):
            out.append(f"namespace {ns}: no default-deny NetworkPolicy (podSelector {{}}, Ingress+Egress, no rules)")

    # Secrets: placeholders only.
    for s in by_kind.get("Secret", []):
        values = dict(s.get("stringData") or {})
        for k, v in (s.get("data") or {}).items():
            try:
                values[k] = base64.b64decode(v).decode()
            except (ValueError, UnicodeDecodeError):
                values[k] = "<not text>"
        for k, v in values.items():
            if k in NAME_KEYS:
                continue
            if not str(v).endswith(PLACEHOLDER_SUFFIX):
                out.append(f"{_name(s)}: key {k} holds something other than a *-{PLACEHOLDER_SUFFIX} placeholder")

    # The Ingress reaches the gateway only.
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"].get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                svc = p["backend"].get("service", {}).get("name")
                if svc != "api-gateway":
                    out.append(f"{_name(ing)}: routes to {svc}, not api-gateway")

    # billing_queue: gateway and worker declare the same queue (RabbitMQ
    # refuses a second declaration that differs, 406), and in prod it is a
    # quorum queue, replicated on the cluster's nodes.
    settings = {}
    for cm in by_kind.get("ConfigMap", []):
        settings.update(cm.get("data") or {})
    for key in ("QUEUE_TYPE", "DELIVERY_LIMIT"):
        gateway = settings.get(f"GATEWAY_RABBITMQ_{key}", "classic" if key == "QUEUE_TYPE" else "20")
        worker = settings.get(f"BILLING_RABBITMQ_{key}", "classic" if key == "QUEUE_TYPE" else "20")
        if gateway != worker:
            out.append(f"GATEWAY_RABBITMQ_{key}={gateway} but BILLING_RABBITMQ_{key}={worker}: they must agree")
    if overlay == "prod" and settings.get("BILLING_RABBITMQ_QUEUE_TYPE") != "quorum":
        out.append("billing_queue is not a quorum queue in prod (BILLING_RABBITMQ_QUEUE_TYPE)")

    # prod: replicas, a PDB and an HPA for every Deployment.
    if overlay == "prod":
        for d in by_kind.get("Deployment", []):
            _, labels = _pod_spec(d)
            if (d["spec"].get("replicas") or 1) < 2:
                out.append(f"{_name(d)}: fewer than 2 replicas in prod")
            if not any(_selects(p["spec"].get("selector"), labels) for p in by_kind.get("PodDisruptionBudget", [])):
                out.append(f"{_name(d)}: no PodDisruptionBudget selects its pods")
            if not any(
                h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
                and h["spec"]["scaleTargetRef"].get("name") == d["metadata"]["name"]
                for h in by_kind.get("HorizontalPodAutoscaler", [])
            ):
                out.append(f"{_name(d)}: no HorizontalPodAutoscaler")
        for c in by_kind.get("Cluster", []):
            spec = c.get("spec") or {}
            if spec.get("instances", 1) < 3:
                out.append(f"{_name(c)}: fewer than 3 instances in prod")
            if (spec.get("postgresql") or {}).get("synchronous", {}).get("number", 0) < 1:
                out.append(f"{_name(c)}: no synchronous replication in prod")
        for r in by_kind.get("RabbitmqCluster", []):
            if (r.get("spec") or {}).get("replicas", 1) < 3:
                out.append(f"{_name(r)}: fewer than 3 replicas in prod")
        if not by_kind.get("Cluster") or not by_kind.get("RabbitmqCluster"):
            out.append("prod has no CloudNativePG Cluster or no RabbitmqCluster")
    return out


def main(argv):
    if len(argv) != 3 or argv[1] not in ("dev", "prod"):
        print("usage: policy.py dev|prod RENDERED.yaml", file=sys.stderr)
        return 2
    found = violations(argv[1], load(pathlib.Path(argv[2]).read_text()))
    for v in found:
        print(f"policy: {argv[1]}: {v}", file=sys.stderr)
    print(f"policy: {argv[1]}: {len(found)} violation(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
