#!/usr/bin/env bash
# Provisions gateway-vm: api-gateway under systemd, port GATEWAY_PORT open to
# everyone who reaches the VM (Vagrant forwards the host's HOST_GATEWAY_PORT);
# Prometheus (UI forwarded to the host's HOST_PROMETHEUS_PORT) and
# Alertmanager (loopback), and the node exporter.
# Run as root inside the VM (Vagrant's shell provisioner does), any number of
# times. Env: the .env values (else read from $ENV_FILE), PROJECT_DIR (the
# uploaded files: /tmp/movie-platform under Vagrant, /vagrant in vm-test's
# qemu mode, which is also the default), DIST_DIR (default $PROJECT_DIR/dist).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Vagrant runs this script alone from /tmp/vagrant-shell: the library is then
# in PROJECT_DIR (see resolve_paths in provision/common.sh).
[[ -r $SCRIPT_DIR/provision/common.sh ]] || SCRIPT_DIR=${PROJECT_DIR:-/vagrant}/scripts
# shellcheck source=provision/common.sh
. "$SCRIPT_DIR/provision/common.sh"
provision_init "$SCRIPT_DIR" gateway "api-gateway"

# The metrics listener and the node exporter bind the private address; let
# them bind even if they start before that interface is up.
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/sysctl/60-movie-platform.conf" /etc/sysctl.d/60-movie-platform.conf 0644
if [[ "$FILE_CHANGED" -eq 1 ]]; then
	sysctl -q -p /etc/sysctl.d/60-movie-platform.conf
fi

# The gateway is reached through Vagrant's port forward (NAT interface) and
# from the private network (its firewall, which provision_init applied, says
# so); it holds no data and talks to the other VMs.
install_service api-gateway GATEWAY_ "$GATEWAY_PORT"

# Monitoring: this VM's node exporter, and Prometheus + Alertmanager, which
# scrape every VM over the private network (docs/observability.md).
install_node_exporter "$VM_GATEWAY_IP"
install_prometheus

mp::log::info "gateway-vm ready: http://${VM_GATEWAY_IP}:${GATEWAY_PORT}/api/movies (host: http://localhost:${HOST_GATEWAY_PORT}/api/movies), Prometheus http://127.0.0.1:${HOST_PROMETHEUS_PORT}/ on the host"
