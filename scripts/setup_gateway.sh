#!/usr/bin/env bash
# Provisions gateway-vm: api-gateway under systemd, port GATEWAY_PORT open to
# everyone who reaches the VM (Vagrant forwards the host's HOST_GATEWAY_PORT).
# Run as root inside the VM (Vagrant's shell provisioner does), any number of
# times. Env: the .env values (else read from $ENV_FILE), PROJECT_DIR
# (default /vagrant), DIST_DIR (default $PROJECT_DIR/dist).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMMON="$SCRIPT_DIR/provision/common.sh"
[ -r "$COMMON" ] || COMMON="${PROJECT_DIR:-/vagrant}/scripts/provision/common.sh"
# shellcheck source=provision/common.sh
. "$COMMON"

provision_init "$SCRIPT_DIR"
step "gateway-vm ($(hostname)): api-gateway"

# The gateway is reached through Vagrant's port forward (NAT interface) and
# from the private network; it holds no data and talks to the other VMs.
# The firewall first: the service's unit Requires= it.
apply_firewall gateway
install_service api-gateway GATEWAY_ "$GATEWAY_PORT"

step "gateway-vm ready: http://${VM_GATEWAY_IP}:${GATEWAY_PORT}/api/movies (host: http://localhost:${HOST_GATEWAY_PORT}/api/movies)"
