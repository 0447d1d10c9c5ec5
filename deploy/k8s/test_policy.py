#!/usr/bin/env python3
"""deploy/k8s/policy.py on every rendered overlay (must pass), and on broken
copies of the prod rendering (each must fail, naming what is missing), so the
policy cannot pass by checking nothing.

    KUBECTL=kubectl python3 deploy/k8s/test_policy.py   (scripts/test.sh k8s)

Renders with `kubectl kustomize` only: no other kubectl command, since
without a cluster kubectl would talk to localhost:8080.
"""

import copy
import os
import pathlib
import subprocess
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import policy  # noqa: E402

OVERLAYS = pathlib.Path(__file__).resolve().parent / "overlays"


def render(overlay):
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return policy.load(out)


RENDERED = {}


def rendered(overlay):
    if overlay not in RENDERED:
        RENDERED[overlay] = render(overlay)
    return copy.deepcopy(RENDERED[overlay])


def find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def container(docs, name):
    return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


class Overlays(unittest.TestCase):
    def test_every_overlay_passes(self):
        overlays = sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir())
        self.assertEqual(overlays, ["dev", "prod"])
        for o in overlays:
            with self.subTest(overlay=o):
                self.assertEqual(policy.violations(o, rendered(o)), [])

    def test_dev_runs_one_replica_of_each_service(self):
        for d in rendered("dev"):
            if d["kind"] == "Deployment":
                self.assertEqual(d["spec"]["replicas"], 1, d["metadata"]["name"])

    def test_images_are_the_three_the_build_makes(self):
        self.assertEqual(policy.built_images(), {"api-gateway-app", "inventory-app", "billing-app"})


class BrokenManifestsFail(unittest.TestCase):
    """One thing removed or changed at a time: the violation names it."""

    def assertViolation(self, docs, expected, overlay="prod"):
        found = policy.violations(overlay, docs)
        self.assertTrue(any(expected in v for v in found), f"{expected!r} not in {found}")

    def test_a_missing_probe(self):
        for probe in ("readinessProbe", "livenessProbe"):
            docs = rendered("prod")
            del container(docs, "inventory-app")[probe]
            self.assertViolation(docs, f"Deployment/inventory-app container inventory-app: no {probe}")

    def test_a_probe_on_the_wrong_path(self):
        docs = rendered("prod")
        container(docs, "api-gateway")["readinessProbe"]["httpGet"]["path"] = "/health"
        self.assertViolation(docs, "readinessProbe is not GET /ready")

    def test_missing_requests_or_limits(self):
        for kind in ("requests", "limits"):
            docs = rendered("dev")
            del container(docs, "billing-worker")["resources"][kind]["memory"]
            self.assertViolation(docs, f"no resources.{kind}.memory", overlay="dev")

    def test_root_writable_root_fs_and_kept_capabilities(self):
        cases = [
            (lambda c, p: (c["securityContext"].pop("runAsNonRoot"), p["securityContext"].pop("runAsNonRoot")),
             "runAsNonRoot is not true"),
            (lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem is not true"),
            (lambda c, p: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "capabilities.drop lacks ALL"),
            (lambda c, p: c["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation is not false"),
            (lambda c, p: p["securityContext"].update(runAsUser=0), "runAsUser is 0"),
        ]
        for change, expected in cases:
            with self.subTest(expected=expected):
                docs = rendered("prod")
                pod = find(docs, "Deployment", "api-gateway")["spec"]["template"]["spec"]
                change(pod["containers"][0], pod)
                self.assertViolation(docs, expected)

    def test_an_init_container_is_held_to_the_same_rules(self):
        docs = rendered("prod")
        pod = find(docs, "Deployment", "inventory-app")["spec"]["template"]["spec"]
        pod["initContainers"] = [{"name": "migrate", "image": "inventory-app:latest"}]
        self.assertViolation(docs, "container migrate: readOnlyRootFilesystem is not true")

    def test_a_prod_deployment_without_a_pdb(self):
        docs = [d for d in rendered("prod") if not (d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "billing-worker")]
        self.assertViolation(docs, "Deployment/billing-worker: no PodDisruptionBudget selects its pods")

    def test_a_prod_deployment_without_an_hpa_or_with_one_replica(self):
        docs = [d for d in rendered("prod") if d["kind"] != "HorizontalPodAutoscaler"]
        find(docs, "Deployment", "api-gateway")["spec"]["replicas"] = 1
        self.assertViolation(docs, "Deployment/api-gateway: no HorizontalPodAutoscaler")
        self.assertViolation(docs, "Deployment/api-gateway: fewer than 2 replicas in prod")

    def test_a_namespace_without_default_deny(self):
        docs = [d for d in rendered("dev") if not (d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "default-deny")]
        self.assertViolation(docs, "namespace movie-platform: no default-deny", overlay="dev")
        # A "default deny" that allows something is not one.
        docs = rendered("dev")
        find(docs, "NetworkPolicy", "default-deny")["spec"]["ingress"] = [{}]
        self.assertViolation(docs, "namespace movie-platform: no default-deny", overlay="dev")
        # Nor one that leaves egress open.
        docs = rendered("dev")
        find(docs, "NetworkPolicy", "default-deny")["spec"]["policyTypes"] = ["Ingress"]
        self.assertViolation(docs, "namespace movie-platform: no default-deny", overlay="dev")

    def test_a_second_namespace_needs_its_own_default_deny(self):
        docs = rendered("dev")
        find(docs, "Deployment", "billing-worker")["metadata"]["namespace"] = "billing"
        self.assertViolation(docs, "namespace billing: no default-deny", overlay="dev")

    def test_a_secret_with_a_real_value(self):
        docs = rendered("prod")
        find(docs, "Secret", "orders-db-app")["stringData"]["password"] = "Xk2-real-password"
        self.assertViolation(docs, "Secret/orders-db-app: key password holds something other than")
        docs = rendered("prod")
        secret = find(docs, "Secret", "rabbitmq-gateway")
        secret.pop("stringData")
        secret["data"] = {"password": "c2VjcmV0"}  # base64 "secret"
        self.assertViolation(docs, "Secret/rabbitmq-gateway: key password holds something other than")

    def test_an_image_the_build_does_not_make(self):
        for image in ("api-gateway:latest", "registry.example/api-gateway-app:1", "nginx"):
            with self.subTest(image=image):
                docs = rendered("prod")
                container(docs, "api-gateway")["image"] = image
                self.assertViolation(docs, f"image {image!r} is not one the build makes")

    def test_an_ingress_to_another_service(self):
        docs = rendered("prod")
        ing = find(docs, "Ingress", "api-gateway")
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "inventory-app"
        self.assertViolation(docs, "routes to inventory-app, not api-gateway")

    def test_prod_data_services_replicated(self):
        docs = rendered("prod")
        find(docs, "Cluster", "orders-db")["spec"]["instances"] = 1
        del find(docs, "Cluster", "movies-db")["spec"]["postgresql"]["synchronous"]
        find(docs, "RabbitmqCluster", "rabbitmq")["spec"]["replicas"] = 1
        self.assertViolation(docs, "Cluster/orders-db: fewer than 3 instances in prod")
        self.assertViolation(docs, "Cluster/movies-db: no synchronous replication in prod")
        self.assertViolation(docs, "RabbitmqCluster/rabbitmq: fewer than 3 replicas in prod")

    def test_prod_queue_is_quorum_and_both_services_agree(self):
        docs = rendered("prod")
        data = find(docs, "ConfigMap", "movie-platform")["data"]
        data["BILLING_RABBITMQ_QUEUE_TYPE"] = "classic"
        self.assertViolation(docs, "GATEWAY_RABBITMQ_QUEUE_TYPE=quorum but BILLING_RABBITMQ_QUEUE_TYPE=classic: they must agree")
        self.assertViolation(docs, "billing_queue is not a quorum queue in prod (BILLING_RABBITMQ_QUEUE_TYPE)")
        docs = rendered("prod")
        del find(docs, "ConfigMap", "movie-platform")["data"]["GATEWAY_RABBITMQ_DELIVERY_LIMIT"]
        find(docs, "ConfigMap", "movie-platform")["data"]["BILLING_RABBITMQ_DELIVERY_LIMIT"] = "5"
        self.assertViolation(docs, "GATEWAY_RABBITMQ_DELIVERY_LIMIT=20 but BILLING_RABBITMQ_DELIVERY_LIMIT=5: they must agree")


if __name__ == "__main__":
    unittest.main(verbosity=2)
