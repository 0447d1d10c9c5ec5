#!/usr/bin/env bash
# Provisions billing-vm: RabbitMQ (AMQP on loopback + private address,
# management UI on the private address, application user from .env),
# PostgreSQL 15 (database BILLING_DB_NAME owned by BILLING_DB_USER, 127.0.0.1
# only) and billing-worker under systemd.
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
step "billing-vm ($(hostname)): RabbitMQ + PostgreSQL + billing-worker"

# RabbitMQ's node name is rabbit@<hostname>: it must resolve locally.
ensure_hostname_resolves

# Configuration goes in place before the package is installed, so the broker's
# very first start (apt starts it) already listens where it should.
step "RabbitMQ: configuration"
rabbit_changed=0
FILE_CHANGED=0
render_template "$DEPLOY_DIR/rabbitmq/rabbitmq.conf.in" /etc/rabbitmq/rabbitmq.conf 0644
copy_if_changed "$DEPLOY_DIR/rabbitmq/enabled_plugins" /etc/rabbitmq/enabled_plugins 0644
rabbit_changed=$FILE_CHANGED
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/systemd/rabbitmq-server.service.d/movie-platform.conf" \
    /etc/systemd/system/rabbitmq-server.service.d/movie-platform.conf 0644
if [ "$FILE_CHANGED" -eq 1 ]; then
    systemctl daemon-reload
fi
FILE_CHANGED=0
copy_if_changed "$DEPLOY_DIR/sysctl/60-movie-platform.conf" /etc/sysctl.d/60-movie-platform.conf 0644
if [ "$FILE_CHANGED" -eq 1 ]; then
    sysctl -q -p /etc/sysctl.d/60-movie-platform.conf
fi

if ! package_installed rabbitmq-server; then
    # apt starts the broker with the configuration already in place.
    rabbit_changed=0
fi
ensure_packages rabbitmq-server postgresql

step "RabbitMQ: service"
systemctl enable --quiet rabbitmq-server.service
if [ "$rabbit_changed" -eq 1 ] && systemctl is-active --quiet rabbitmq-server.service; then
    info "restarting RabbitMQ (configuration changed; takes a while)"
    systemctl restart rabbitmq-server.service
else
    systemctl start rabbitmq-server.service
fi
rabbitmqctl --timeout "${RABBITMQ_WAIT_SECONDS:-300}" await_startup >/dev/null
info "RabbitMQ is running"

# `management`: may log in to the management UI and see its own vhost.
rabbitmq_ensure_user "$RABBITMQ_VHOST" "$RABBITMQ_USER" "$RABBITMQ_PASSWORD" management

pg_configure
pg_ensure_db \
    "$BILLING_DB_NAME" "$BILLING_DB_USER" "$BILLING_DB_PASSWORD" 127.0.0.1 "$POSTGRES_PORT"

install_service billing-worker BILLING_ "$BILLING_HEALTH_PORT"

apply_firewall billing

step "billing-vm ready: AMQP ${VM_BILLING_IP}:${RABBITMQ_PORT} (gateway only), management http://${VM_BILLING_IP}:${RABBITMQ_MANAGEMENT_PORT}/ (private network), PostgreSQL 127.0.0.1:${POSTGRES_PORT}"
