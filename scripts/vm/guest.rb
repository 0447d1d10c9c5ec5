# The VMs' architecture and box, as pure functions of the host CPU, the
# provider and the user's override, so the choice is tested without Vagrant
# (scripts/vm/guest_test.rb) and the Vagrantfile only applies it.
module MovieGuest
  class Error < StandardError; end

  ARCHES = %w[amd64 arm64].freeze
  PROVIDERS = %w[virtualbox libvirt vmware_desktop parallels qemu].freeze

  # A Debian 12 box that is published for each provider and architecture.
  # debian/bookworm64 is Debian's own box, amd64 only (virtualbox, libvirt).
  # bento/debian-12 publishes amd64 and arm64 builds for virtualbox,
  # vmware_desktop and parallels under one name; Vagrant >= 2.4 picks the
  # architecture (box_architecture). bento has no libvirt or qemu arm64 build;
  # cloud-image/debian-12 (Debian's cloud image, with cloud-init, which
  # vagrant-qemu uses to set the private address) has qemu and libvirt
  # builds for both.
  BOXES = {
    "amd64" => {
      "virtualbox" => "debian/bookworm64",
      "libvirt" => "debian/bookworm64",
      "vmware_desktop" => "bento/debian-12",
      "parallels" => "bento/debian-12",
      "qemu" => "cloud-image/debian-12",
    },
    "arm64" => {
      "virtualbox" => "bento/debian-12",
      "libvirt" => "cloud-image/debian-12",
      "vmware_desktop" => "bento/debian-12",
      "parallels" => "bento/debian-12",
      "qemu" => "cloud-image/debian-12",
    },
  }.freeze

  # Debian's name for a CPU (RbConfig::CONFIG["host_cpu"], uname -m), or nil.
  def self.debian_arch(cpu)
    case cpu.to_s.downcase
    when "x86_64", "amd64", "x64" then "amd64"
    when "arm64", "aarch64", /\Aarm64e?\z/ then "arm64"
    end
  end

  # The guest architecture: the override (MP_GUEST_ARCH) when set, else the
  # host's own. Hardware virtualization runs guests of the host's CPU only
  # (VirtualBox 7.1+, VMware Fusion and Parallels on Apple Silicon run arm64
  # guests only; qemu could emulate amd64 there, but many times slower).
  def self.arch(host_cpu:, override: nil)
    unless override.nil? || override.strip.empty?
      a = debian_arch(override.strip)
      raise Error, "MP_GUEST_ARCH=#{override}: expected amd64 or arm64" unless a

      return a
    end
    a = debian_arch(host_cpu)
    raise Error, "this host's CPU (#{host_cpu}) is neither x86_64 nor arm64: set MP_GUEST_ARCH=amd64 or arm64" unless a

    a
  end

  # The box for a provider and architecture; MP_VAGRANT_BOX (override) wins.
  def self.box(provider, arch, override: nil)
    return override unless override.nil? || override.strip.empty?

    BOXES.fetch(arch).fetch(provider.to_s) do
      raise Error, "no Debian 12 box is known for provider #{provider} on #{arch}: " \
                   "use one of #{PROVIDERS.join(', ')}, or name a box with MP_VAGRANT_BOX"
    end
  end

  # Vagrant >= 2.4 understands box_architecture (a box published for several
  # architectures under one name); older ones take the box's only build.
  def self.box_architecture?(vagrant_version)
    Gem::Version.new(vagrant_version) >= Gem::Version.new("2.4.0")
  end
end

module MovieGuest
  # vagrant-qemu settings for a guest of `arch` on this host: hardware
  # acceleration (hvf on macOS, kvm on Linux) when the guest is of the host's
  # own CPU, else TCG emulation; firmware where Homebrew or Debian put it.
  def self.qemu_settings(host_os:, host_cpu:, arch:)
    native = debian_arch(host_cpu) == arch
    mac = host_os.to_s.include?("darwin")
    accel = native ? (mac ? "hvf" : "kvm") : "tcg"
    s = if arch == "arm64"
          { arch: "aarch64", machine: "virt,accel=#{accel},highmem=on",
            cpu: native ? "host" : "cortex-a72", net_device: "virtio-net-pci" }
        else
          { arch: "x86_64", machine: "q35,accel=#{accel}",
            cpu: native ? "host" : "max", net_device: "virtio-net-pci" }
        end
    s[:qemu_dir] = mac ? (host_cpu.to_s.start_with?("arm", "aarch") ? "/opt/homebrew/share/qemu" : "/usr/local/share/qemu") : "/usr/share/qemu"
    s
  end
end

module MovieGuest
  # The deployments `vagrant up` can make, chosen by MP_TOPOLOGY: "default"
  # (the three VMs gateway-vm, inventory-vm, billing-vm; also when unset or
  # empty) or "ha" (the high-availability topology of docs/ha.md: ha1-vm,
  # ha2-vm, ha3-vm). Anything else stops Vagrant with one message, before any
  # VM is defined: a typo must not bring up the default VMs instead.
  TOPOLOGIES = %w[default ha].freeze

  def self.topology(value)
    t = value.to_s.strip
    return "default" if t.empty?
    return t if TOPOLOGIES.include?(t)

    raise Error, "MP_TOPOLOGY=#{value}: expected one of #{TOPOLOGIES.join(', ')} (unset means default)"
  end

  # The HA topology's VMs, from the settings (.env): three alike, 2 GB and 2
  # vCPUs each (6 GB in all, issue 24's budget): a RabbitMQ node (150-250 MB
  # idle, its memory watermark at 40 % of RAM holds a backlog), up to two
  # PostgreSQL servers (movies and orders nodes, or the monitor), the three
  # services and keepalived; ha-test.sh measured 134-192 MiB of PSS per VM
  # for all of it, the rest is the kernel, page cache and the broker's
  # headroom. Two vCPUs: the Erlang schedulers and the databases' commits run
  # at once. The first VM is primary (`vagrant ssh` without a name) and
  # carries the host's port forward. Listed third VM first: it holds the
  # pg_auto_failover monitor and creates the broker's accounts, so with a
  # provider that brings VMs up one at a time (VirtualBox) the database
  # nodes of the other two find their monitor running.
  HA_MEMORY_MB = 2048
  HA_CPUS = 2

  def self.ha_machines(settings, host_port:, guest_port:)
    [3, 1, 2].map do |i|
      name = settings.fetch("HA_VM#{i}_NAME") { raise Error, ".env does not define HA_VM#{i}_NAME" }
      ip = settings.fetch("HA_VM#{i}_IP") { raise Error, ".env does not define HA_VM#{i}_IP" }
      m = { name: name, ip: ip, memory: HA_MEMORY_MB, cpus: HA_CPUS, script: "scripts/setup_ha.sh" }
      if i == 1
        m[:primary] = true
        m[:forwards] = [{ id: "gateway-http", guest: guest_port, host: host_port }]
      end
      m
    end
  end
end
