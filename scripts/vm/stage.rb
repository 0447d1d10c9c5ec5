# frozen_string_literal: true

# What each VM receives, in one place: the Vagrantfile stages and uploads it,
# vm-test's qemu mode builds each VM's project disk from it, and
# scripts/vm/stage_test.rb checks it.
#
# - files: exactly what the VM's provisioning reads (its setup script, the
#   provisioning library, the deployment files of its role) and its binary,
#   for every architecture in dist/. Nothing of another deployment
#   (deploy/docker/, ...), never .env, never a symlink: Vagrant's upload opens
#   every entry it walks and stops at a dangling link, and a Windows checkout
#   has no links at all.
# - settings: the .env values the VM's provisioning needs, each VM only its own
#   secrets, written to a 0600 file that the Vagrantfile uploads into a 0700
#   folder. Vagrant's shell provisioner puts `env:` values on a command line it
#   logs at info level, so no secret travels that way.
require "fileutils"
require_relative "../lib/dotenv"

module MovieStage
  class Error < StandardError; end

  VMS = %w[gateway-vm inventory-vm billing-vm].freeze
  # The high-availability topology's VMs (MP_TOPOLOGY=ha, docs/ha.md): the
  # names of .env's HA_VM1_NAME..HA_VM3_NAME (stage_test.rb checks they
  # agree). Each runs scripts/setup_ha.sh and every service.
  HA_VMS = %w[ha1-vm ha2-vm ha3-vm].freeze
  ALL_VMS = (VMS + HA_VMS).freeze

  # Read by every VM's provisioning: the library (scripts/provision/common.sh
  # sources scripts/lib/mp.sh, which sources scripts/lib/dotenv.sh) and the
  # firewall unit every service unit Requires=.
  COMMON_FILES = %w[
    scripts/lib/mp.sh
    scripts/lib/dotenv.sh
    scripts/provision/common.sh
    deploy/systemd/movie-platform-firewall.service
  ].freeze

  # Per VM: its setup script (Vagrant's shell provisioner uploads it on its
  # own too; a copy here lets an operator rerun it by hand), its service unit
  # and the configuration its setup script installs.
  ROLE_FILES = {
    "gateway-vm" => %w[
      scripts/setup_gateway.sh
      deploy/systemd/api-gateway.service
      deploy/sysctl/60-movie-platform.conf
      deploy/prometheus/vm/prometheus.yml.in
      deploy/prometheus/vm/alertmanager.yml
      deploy/prometheus/alerts.yml
      deploy/prometheus/consoles/movie-platform.html
    ],
    "inventory-vm" => %w[
      scripts/setup_inventory.sh
      deploy/systemd/inventory-app.service
      deploy/sysctl/60-movie-platform.conf
      deploy/postgresql/movie-platform.conf.in
    ],
    "billing-vm" => %w[
      scripts/setup_billing.sh
      deploy/systemd/billing-worker.service
      deploy/systemd/rabbitmq-server.service.d/movie-platform.conf
      deploy/sysctl/60-movie-platform.conf
      deploy/postgresql/movie-platform.conf.in
      deploy/rabbitmq/rabbitmq.conf.in
      deploy/rabbitmq/rabbitmq-env.conf.in
      deploy/rabbitmq/enabled_plugins
    ],
  }.merge(HA_VMS.to_h do |vm|
    [vm, %w[
      scripts/setup_ha.sh
      deploy/systemd/api-gateway.service
      deploy/systemd/inventory-app.service
      deploy/systemd/billing-worker.service
      deploy/systemd/pg-autoctl@.service
      deploy/systemd/rabbitmq-server.service.d/movie-platform.conf
      deploy/sysctl/60-movie-platform.conf
      deploy/rabbitmq/ha.conf.in
      deploy/rabbitmq/ha-vm.conf.in
      deploy/rabbitmq/ha-enabled_plugins
      deploy/keepalived/keepalived.conf.in
      deploy/pg_auto_failover/monitor.conf
    ]]
  end).freeze

  # A VM's binaries (the HA VMs run all three).
  BINARY = {
    "gateway-vm" => "api-gateway",
    "inventory-vm" => "inventory-app",
    "billing-vm" => "billing-worker",
  }.merge(HA_VMS.to_h { |vm| [vm, %w[api-gateway inventory-app billing-worker]] }).freeze

  # The secrets each VM's provisioning needs, and no other. billing-vm holds
  # the broker, so it creates all three RabbitMQ accounts. The MONITOR_*_DB_
  # passwords (the PostgreSQL exporter's pg_monitor role, used by the
  # containers today) go to the VM of their database, the one place a VM's
  # exporter would log in with them.
  SECRETS = {
    "gateway-vm" => %w[GATEWAY_RABBITMQ_PASSWORD],
    "inventory-vm" => %w[INVENTORY_DB_PASSWORD INVENTORY_DB_MIGRATION_PASSWORD MONITOR_INVENTORY_DB_PASSWORD],
    "billing-vm" => %w[
      BILLING_DB_PASSWORD BILLING_DB_MIGRATION_PASSWORD MONITOR_BILLING_DB_PASSWORD BILLING_RABBITMQ_PASSWORD
      RABBITMQ_GATEWAY_PASSWORD RABBITMQ_WORKER_PASSWORD RABBITMQ_ADMIN_PASSWORD
    ],
  }.merge(HA_VMS.to_h do |vm|
    # Every service and a node of every engine: each VM may be the one that
    # creates the broker's accounts and the databases' roles (the first VM,
    # or whichever holds a database's primary). No exporter runs there yet,
    # so no MONITOR_* password.
    [vm, %w[
      GATEWAY_RABBITMQ_PASSWORD INVENTORY_DB_PASSWORD INVENTORY_DB_MIGRATION_PASSWORD
      BILLING_DB_PASSWORD BILLING_DB_MIGRATION_PASSWORD BILLING_RABBITMQ_PASSWORD
      RABBITMQ_GATEWAY_PASSWORD RABBITMQ_WORKER_PASSWORD RABBITMQ_ADMIN_PASSWORD
      RABBITMQ_HA_COOKIE_PASSWORD
    ]]
  end).freeze

  # A setting is a secret when its name says so. Every secret .env defines
  # must be given to some VM (stage_test.rb checks it), so a new password
  # cannot be forgotten here.
  def self.secret?(key)
    key.match?(/(PASSWORD|SECRET|TOKEN)\z/)
  end

  def self.check_vm(vm)
    raise Error, "unknown VM #{vm.inspect} (known: #{ALL_VMS.join(', ')})" unless ALL_VMS.include?(vm)
  end

  def self.files(vm)
    check_vm(vm)
    COMMON_FILES + ROLE_FILES.fetch(vm)
  end

  # stage(root, dest, vm): a fresh DEST holding exactly files(vm) and the VM's
  # binary from every dist/<arch>/ that has it. Returns the staged paths,
  # relative to DEST.
  def self.stage(root, dest, vm)
    staged = []
    FileUtils.rm_rf(dest)
    FileUtils.mkdir_p(dest)
    files(vm).each do |rel|
      copy(File.join(root, rel), File.join(dest, rel))
      staged << rel
    end
    Array(BINARY.fetch(vm)).each do |name|
      Dir.glob(File.join(root, "dist", "*", name)).sort.each do |bin|
        rel = File.join("dist", File.basename(File.dirname(bin)), name)
        copy(bin, File.join(dest, rel))
        staged << rel
      end
    end
    staged
  end

  # A regular file's bytes and mode; anything else is refused.
  def self.copy(src, dst)
    st = File.lstat(src)
    raise Error, "#{src} is a symlink: the VMs' files must be regular files" if st.symlink?
    raise Error, "#{src} is not a regular file" unless st.file?

    FileUtils.mkdir_p(File.dirname(dst))
    FileUtils.cp(src, dst)
    File.chmod(st.mode & 0o755, dst)
  rescue Errno::ENOENT
    raise Error, "#{src} is missing: the provisioning of this VM reads it"
  end

  # settings(vm, all): the values the VM's provisioning gets: every setting
  # that is not a secret (addresses, ports, names) and the VM's own secrets.
  def self.settings(vm, all)
    check_vm(vm)
    mine = SECRETS.fetch(vm)
    missing = mine.reject { |k| all.key?(k) }
    raise Error, ".env does not define #{missing.join(', ')}" unless missing.empty?

    all.select { |k, _| !secret?(k) || mine.include?(k) }
  end

  # One KEY='value' line each: the .env grammar (scripts/lib/dotenv.*), where
  # single quotes take a value literally.
  def self.settings_text(values)
    lines = values.map do |k, v|
      raise Error, "#{k}: a value cannot span lines" if v.include?("\n") || v.include?("\r")

      if !v.include?("'")
        "#{k}='#{v}'"
      elsif !v.include?('"') && !v.include?("${")
        "#{k}=\"#{v}\""
      else
        raise Error, "#{k}: a value holding both ' and \" (or ' and ${) cannot be written to the VM's settings"
      end
    end
    "# Written by scripts/vm/stage.rb for one VM's provisioning; removed after it.\n#{lines.join("\n")}\n"
  end

  # write_settings(path, values): created 0600 (never readable by others, not
  # even for a moment), replaced atomically.
  def self.write_settings(path, values)
    FileUtils.mkdir_p(File.dirname(path), mode: 0o700)
    File.chmod(0o700, File.dirname(path))
    tmp = "#{path}.tmp"
    # Binary: a Windows host's text mode would write CRLF line ends.
    File.open(tmp, File::WRONLY | File::CREAT | File::TRUNC | File::BINARY, 0o600) { |f| f.write(settings_text(values)) }
    File.rename(tmp, path)
  end
end

# ruby scripts/vm/stage.rb VM DEST [SETTINGS_FILE DOTENV]: stage VM's files in
# DEST (vm-test's qemu mode makes its project disk of it); with SETTINGS_FILE,
# also write the VM's settings, read from DOTENV (resolved .env values).
if $PROGRAM_NAME == __FILE__
  begin
    vm, dest, settings_file, dotenv = ARGV
    raise MovieStage::Error, "usage: stage.rb VM DEST [SETTINGS_FILE DOTENV]" unless vm && dest

    MovieStage.stage(File.expand_path("../..", __dir__), dest, vm)
    if settings_file
      raise MovieStage::Error, "SETTINGS_FILE needs DOTENV" unless dotenv

      MovieStage.write_settings(settings_file, MovieStage.settings(vm, MovieDotenv.load(dotenv)))
    end
  rescue MovieStage::Error, MovieDotenv::Error, SystemCallError => e
    warn "stage.rb: #{e.message}"
    exit 1
  end
end
