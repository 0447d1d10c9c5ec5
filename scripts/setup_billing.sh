#!/usr/bin/env bash
# Provisions billing-vm: RabbitMQ (AMQP on loopback + private address;
# management UI, Erlang distribution and epmd on loopback; the gateway, worker
# and admin accounts of .env with least privilege, no guest),
# PostgreSQL 15 (database BILLING_DB_NAME owned by BILLING_DB_USER, 127.0.0.1
# only) and billing-worker under systemd.
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
provision_init "$SCRIPT_DIR" billing "RabbitMQ + PostgreSQL + billing-worker"

# RabbitMQ's node name is rabbit@<hostname>: it must resolve locally.
ensure_hostname_resolves

# Configuration goes in place before the package is installed, so the broker's
# very first start (apt starts it) already listens where it should.
mp::log::info "RabbitMQ: configuration"
rabbit_changed=0
FILE_CHANGED=0
node_addr="$(rabbitmq_node_address "$(hostname)")"
RABBITMQ_DIST_INTERFACE="{${node_addr//./,}}"
export RABBITMQ_DIST_INTERFACE
render_template "$DEPLOY_DIR/rabbitmq/rabbitmq.conf.in" /etc/rabbitmq/rabbitmq.conf 0644
render_template "$DEPLOY_DIR/rabbitmq/rabbitmq-env.conf.in" /etc/rabbitmq/rabbitmq-env.conf 0644
copy_if_changed "$DEPLOY_DIR/rabbitmq/enabled_plugins" /etc/rabbitmq/enabled_plugins 0644
rabbit_changed=$FILE_CHANGED
FILE_CHANGED=0
write_if_changed /etc/systemd/system/epmd.socket.d/movie-platform.conf 0644 \
	< <(epmd_socket_dropin "$node_addr")
epmd_changed=$FILE_CHANGED
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/systemd/rabbitmq-server.service.d/movie-platform.conf" \
	/etc/systemd/system/rabbitmq-server.service.d/movie-platform.conf 0644
if [[ "$FILE_CHANGED" -eq 1 ]] || [[ "$epmd_changed" -eq 1 ]]; then
	systemctl daemon-reload
fi
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/sysctl/60-movie-platform.conf" /etc/sysctl.d/60-movie-platform.conf 0644
if [[ "$FILE_CHANGED" -eq 1 ]]; then
	sysctl -q -p /etc/sysctl.d/60-movie-platform.conf
fi

if ! mp::pkg::installed rabbitmq-server; then
	# apt starts the broker with the configuration already in place.
	rabbit_changed=0
fi
mp::pkg::install rabbitmq-server postgresql

mp::log::info "RabbitMQ: service"
systemctl enable --quiet rabbitmq-server.service
# A broker still starting (on a fresh VM the boot's start is its very first,
# which creates its database) is let finish before it is stopped or
# restarted: stopped half-way, its next start can fail (a qemu run of
# vm-test saw `systemctl start` fail right after such a stop).
rabbit_starting() { [[ "$(systemctl is-active rabbitmq-server.service)" == activating ]]; }
rabbit_settled() { ! rabbit_starting; }
if rabbit_starting; then
	mp::log::detail "RabbitMQ is still starting (the boot's start): waiting for it"
	MP_WAIT_INTERVAL=2 mp::wait_until 600 "RabbitMQ's boot start to end" rabbit_settled || true
fi
# rabbit_systemctl ACTION: systemctl ACTION rabbitmq-server, and on failure
# the broker's own last words before the provisioning stops.
rabbit_systemctl() {
	systemctl "$1" rabbitmq-server.service && return 0
	mp::log::warn "systemctl $1 rabbitmq-server failed; its journal and log:"
	journalctl -u rabbitmq-server.service -n 30 --no-pager >&2 || true
	tail -n 30 /var/log/rabbitmq/rabbit@*.log >&2 2>/dev/null || true
	mp::die "RabbitMQ did not $1 (above: why); after fixing it run: vagrant provision billing-vm"
}
if [[ "$epmd_changed" -eq 1 ]] && systemctl is-active --quiet epmd.socket; then
	# epmd keeps its listening sockets until it restarts, and a node does not
	# register again with a new epmd: restart the broker around it.
	mp::log::detail "rebinding epmd to loopback (restarts RabbitMQ; takes a while)"
	systemctl stop rabbitmq-server.service
	systemctl stop epmd.service epmd.socket
	systemctl start epmd.socket
	rabbit_changed=1
fi
if [[ "$rabbit_changed" -eq 1 ]] && systemctl is-active --quiet rabbitmq-server.service; then
	mp::log::detail "restarting RabbitMQ (configuration changed; takes a while)"
	rabbit_systemctl restart
else
	rabbit_systemctl start
fi
rabbitmqctl --timeout "${RABBITMQ_WAIT_SECONDS:-300}" await_startup >/dev/null
mp::log::detail "RabbitMQ is running"

# gateway (declare + publish), worker (declare + consume), admin (management
# UI); guest deleted. The permissions: rabbitmq_permissions in common.sh.
rabbitmq_accounts

pg_configure
pg_ensure_db \
	"$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" 127.0.0.1 "$POSTGRES_PORT" \
	"$BILLING_DB_MIGRATION_USER" "$BILLING_DB_MIGRATION_PASSWORD"

install_service billing-worker BILLING_ "$BILLING_HEALTH_PORT"

# Monitoring, scraped by gateway-vm's Prometheus (RabbitMQ's own metrics come
# from its rabbitmq_prometheus plugin, deploy/rabbitmq/enabled_plugins).
install_node_exporter "$VM_BILLING_IP"
install_postgres_exporter "$VM_BILLING_IP" "$BILLING_DB_NAME" MONITOR_BILLING_DB_USER

mp::log::info "billing-vm ready: AMQP ${VM_BILLING_IP}:${RABBITMQ_PORT} (gateway only), management http://127.0.0.1:${RABBITMQ_MANAGEMENT_PORT}/ (vagrant ssh billing-vm -- -L ${RABBITMQ_MANAGEMENT_PORT}:127.0.0.1:${RABBITMQ_MANAGEMENT_PORT}), PostgreSQL 127.0.0.1:${POSTGRES_PORT}"
