#!/usr/bin/env bash
# Provisions inventory-vm: PostgreSQL 15 (database INVENTORY_DB_NAME owned by
# INVENTORY_DB_USER, listening on 127.0.0.1 only) and inventory-app under
# systemd, whose port only gateway-vm may reach.
# Run as root inside the VM (Vagrant's shell provisioner does), any number of
# times. Env: the .env values (else read from $ENV_FILE), PROJECT_DIR
# (default /vagrant), DIST_DIR (default $PROJECT_DIR/dist), FIREWALL=no to skip
# the nftables rules.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMMON="$SCRIPT_DIR/provision/common.sh"
[ -r "$COMMON" ] || COMMON="${PROJECT_DIR:-/vagrant}/scripts/provision/common.sh"
# shellcheck source=provision/common.sh
. "$COMMON"

provision_init "$SCRIPT_DIR"
step "inventory-vm ($(hostname)): PostgreSQL + inventory-app"

ensure_packages postgresql
pg_configure
pg_ensure_db \
    "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" 127.0.0.1 "$POSTGRES_PORT"

# The table itself is created by inventory-app's embedded migrations at start.
install_service inventory-app INVENTORY_ "$INVENTORY_PORT"

apply_firewall inventory

step "inventory-vm ready: inventory-app on ${VM_INVENTORY_IP}:${INVENTORY_PORT} (gateway only), PostgreSQL on 127.0.0.1:${POSTGRES_PORT}"
