#!/usr/bin/env bash
# Provisions inventory-vm: PostgreSQL 15 (database INVENTORY_DB_NAME owned by
# INVENTORY_DB_USER, listening on 127.0.0.1 only) and inventory-app under
# systemd, whose port only gateway-vm may reach.
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
provision_init "$SCRIPT_DIR" inventory "PostgreSQL + inventory-app"

# The service binds its private address (INVENTORY_HOST); let it bind even
# if it starts before that interface is up.
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/sysctl/60-movie-platform.conf" /etc/sysctl.d/60-movie-platform.conf 0644
if [[ "$FILE_CHANGED" -eq 1 ]]; then
	sysctl -q -p /etc/sysctl.d/60-movie-platform.conf
fi

mp::pkg::install postgresql
pg_configure
pg_ensure_db \
	"$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD" 127.0.0.1 "$POSTGRES_PORT" \
	"$INVENTORY_DB_MIGRATION_USER" "$INVENTORY_DB_MIGRATION_PASSWORD"

# The table itself is created by inventory-app's embedded migrations, which
# install_service runs (`inventory-app migrate`, as the migration role) before
# it starts the service.
install_service inventory-app INVENTORY_ "$INVENTORY_PORT"

# Monitoring, scraped by gateway-vm's Prometheus: the node exporter and the
# PostgreSQL exporter (after the migrations: they take CONNECT from PUBLIC).
install_node_exporter "$VM_INVENTORY_IP"
install_postgres_exporter "$VM_INVENTORY_IP" "$INVENTORY_DB_NAME" MONITOR_INVENTORY_DB_USER

mp::log::info "inventory-vm ready: inventory-app on ${VM_INVENTORY_IP}:${INVENTORY_PORT} (gateway only), PostgreSQL on 127.0.0.1:${POSTGRES_PORT}"
