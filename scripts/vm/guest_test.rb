# Tests of scripts/vm/guest.rb, the Vagrantfile's choice of guest
# architecture, box and qemu settings: `ruby scripts/vm/guest_test.rb`.
require "minitest/autorun"
require_relative "guest"

class GuestArchTest < Minitest::Test
  def test_the_host_cpu_decides
    # RbConfig::CONFIG["host_cpu"] as Ruby reports it on each host.
    assert_equal "amd64", MovieGuest.arch(host_cpu: "x86_64")
    assert_equal "amd64", MovieGuest.arch(host_cpu: "x64") # Windows
    assert_equal "arm64", MovieGuest.arch(host_cpu: "arm64") # Apple Silicon
    assert_equal "arm64", MovieGuest.arch(host_cpu: "arm64e")
    assert_equal "arm64", MovieGuest.arch(host_cpu: "aarch64") # arm64 Linux
  end

  def test_the_override_wins_and_empty_means_unset
    assert_equal "amd64", MovieGuest.arch(host_cpu: "arm64", override: "amd64")
    assert_equal "arm64", MovieGuest.arch(host_cpu: "x86_64", override: "arm64")
    assert_equal "arm64", MovieGuest.arch(host_cpu: "x86_64", override: " aarch64 ")
    assert_equal "amd64", MovieGuest.arch(host_cpu: "x86_64", override: "")
  end

  def test_bad_values_name_the_fix
    e = assert_raises(MovieGuest::Error) { MovieGuest.arch(host_cpu: "x86_64", override: "riscv64") }
    assert_equal "MP_GUEST_ARCH=riscv64: expected amd64 or arm64", e.message
    e = assert_raises(MovieGuest::Error) { MovieGuest.arch(host_cpu: "powerpc64le") }
    assert_equal "this host's CPU (powerpc64le) is neither x86_64 nor arm64: set MP_GUEST_ARCH=amd64 or arm64", e.message
  end
end

class GuestBoxTest < Minitest::Test
  def test_amd64_keeps_debians_own_box_where_it_exists
    assert_equal "debian/bookworm64", MovieGuest.box("virtualbox", "amd64")
    assert_equal "debian/bookworm64", MovieGuest.box("libvirt", "amd64")
    assert_equal "bento/debian-12", MovieGuest.box("vmware_desktop", "amd64")
    assert_equal "bento/debian-12", MovieGuest.box("parallels", "amd64")
    assert_equal "cloud-image/debian-12", MovieGuest.box("qemu", "amd64")
  end

  def test_arm64_never_gets_the_amd64_only_box
    MovieGuest::PROVIDERS.each do |p|
      refute_equal "debian/bookworm64", MovieGuest.box(p, "arm64"), p
    end
    assert_equal "bento/debian-12", MovieGuest.box(:virtualbox, "arm64")
    assert_equal "bento/debian-12", MovieGuest.box("vmware_desktop", "arm64")
    assert_equal "bento/debian-12", MovieGuest.box("parallels", "arm64")
    assert_equal "cloud-image/debian-12", MovieGuest.box("qemu", "arm64")
    assert_equal "cloud-image/debian-12", MovieGuest.box("libvirt", "arm64")
  end

  def test_mp_vagrant_box_wins
    assert_equal "local/test", MovieGuest.box("libvirt", "arm64", override: "local/test")
    assert_equal "debian/bookworm64", MovieGuest.box("virtualbox", "amd64", override: "")
  end

  def test_an_unknown_provider_says_what_to_do
    e = assert_raises(MovieGuest::Error) { MovieGuest.box("hyperv", "amd64") }
    assert_match(/no Debian 12 box is known for provider hyperv on amd64: use one of virtualbox, libvirt, vmware_desktop, parallels, qemu, or name a box with MP_VAGRANT_BOX/, e.message)
  end

  def test_box_architecture_needs_vagrant_2_4
    refute MovieGuest.box_architecture?("2.3.4")
    assert MovieGuest.box_architecture?("2.4.0")
    assert MovieGuest.box_architecture?("2.4.3")
  end
end

class GuestQemuTest < Minitest::Test
  def test_apple_silicon_runs_arm64_with_hvf
    s = MovieGuest.qemu_settings(host_os: "darwin23", host_cpu: "arm64", arch: "arm64")
    assert_equal({ arch: "aarch64", machine: "virt,accel=hvf,highmem=on", cpu: "host",
                   net_device: "virtio-net-pci", qemu_dir: "/opt/homebrew/share/qemu" }, s)
  end

  def test_an_emulated_guest_uses_tcg
    s = MovieGuest.qemu_settings(host_os: "linux-gnu", host_cpu: "x86_64", arch: "arm64")
    assert_equal "virt,accel=tcg,highmem=on", s[:machine]
    assert_equal "cortex-a72", s[:cpu]
    assert_equal "/usr/share/qemu", s[:qemu_dir]
    s = MovieGuest.qemu_settings(host_os: "darwin23", host_cpu: "arm64", arch: "amd64")
    assert_equal "q35,accel=tcg", s[:machine]
  end

  def test_linux_amd64_uses_kvm
    s = MovieGuest.qemu_settings(host_os: "linux-gnu", host_cpu: "x86_64", arch: "amd64")
    assert_equal({ arch: "x86_64", machine: "q35,accel=kvm", cpu: "host",
                   net_device: "virtio-net-pci", qemu_dir: "/usr/share/qemu" }, s)
  end
end

class GuestTopologyTest < Minitest::Test
  SETTINGS = {
    "HA_VM1_NAME" => "ha1-vm", "HA_VM1_IP" => "192.168.56.21",
    "HA_VM2_NAME" => "ha2-vm", "HA_VM2_IP" => "192.168.56.22",
    "HA_VM3_NAME" => "ha3-vm", "HA_VM3_IP" => "192.168.56.23",
  }.freeze

  def test_unset_or_empty_is_the_default
    assert_equal "default", MovieGuest.topology(nil)
    assert_equal "default", MovieGuest.topology("")
    assert_equal "default", MovieGuest.topology("  ")
    assert_equal "default", MovieGuest.topology("default")
  end

  def test_ha_is_known
    assert_equal "ha", MovieGuest.topology("ha")
    assert_equal "ha", MovieGuest.topology(" ha ")
  end

  def test_an_unknown_value_fails_with_one_message
    e = assert_raises(MovieGuest::Error) { MovieGuest.topology("HA") }
    assert_equal "MP_TOPOLOGY=HA: expected one of default, ha (unset means default)", e.message
    assert_raises(MovieGuest::Error) { MovieGuest.topology("three") }
  end

  def test_ha_machines_are_three_alike_within_6_gb
    ms = MovieGuest.ha_machines(SETTINGS, host_port: 8080, guest_port: 8080)
    # The monitor's VM first (brought up first by a sequential provider).
    assert_equal %w[ha3-vm ha1-vm ha2-vm], ms.map { |m| m[:name] }
    assert_equal %w[192.168.56.23 192.168.56.21 192.168.56.22], ms.map { |m| m[:ip] }
    assert(ms.all? { |m| m[:script] == "scripts/setup_ha.sh" })
    assert_operator ms.sum { |m| m[:memory] }, :<=, 6144
    assert_equal [true], ms.filter_map { |m| m[:primary] }
    ha1 = ms.find { |m| m[:name] == "ha1-vm" }
    assert ha1[:primary]
    assert_equal [{ id: "gateway-http", guest: 8080, host: 8080 }], ha1[:forwards]
    assert_equal 1, ms.count { |m| m[:forwards] }
  end

  def test_a_missing_setting_is_named
    e = assert_raises(MovieGuest::Error) do
      MovieGuest.ha_machines(SETTINGS.reject { |k, _| k == "HA_VM2_IP" }, host_port: 8080, guest_port: 8080)
    end
    assert_equal ".env does not define HA_VM2_IP", e.message
  end
end
