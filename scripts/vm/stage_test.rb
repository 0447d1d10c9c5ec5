# Tests of scripts/vm/stage.rb, what the Vagrantfile uploads to each VM:
# `ruby scripts/vm/stage_test.rb` (scripts/test.sh hostside runs it).
require "minitest/autorun"
require "find"
require "tmpdir"
require_relative "stage"

ROOT = File.expand_path("../..", __dir__)
ARCHES = %w[amd64 arm64].freeze
# Deployments the VMs have nothing to do with (the alert rules and console in
# deploy/prometheus/ are not deployed on the VMs yet: promtool and the
# containers test use them; deploy/grafana/ is for users who run Grafana).
OTHER_DEPLOYMENTS = %r{\Adeploy/(docker|swarm|k8s|grafana)/}.freeze
# The alert rules' tests and runbooks: read by people and `scripts/test.sh
# observability`, never by a VM (gateway-vm gets the rules and the console).
NOT_ON_VMS = %w[deploy/prometheus/alerts_test.yml deploy/prometheus/runbooks.md].freeze
# Files of the high-availability topology (its VMs and scripts/ha-test.sh);
# the default VMs must not get them.
HA_ONLY = %w[
  deploy/rabbitmq/ha.conf.in deploy/rabbitmq/ha-vm.conf.in deploy/rabbitmq/ha-enabled_plugins
  deploy/keepalived/keepalived.conf.in deploy/systemd/pg-autoctl@.service
].freeze

# A literal path under $DEPLOY_DIR (one built from a variable is left to the
# manifest, and proven by the real `vagrant up` in scripts/test.sh vagrant).
DEPLOY_REF = %r{\$DEPLOY_DIR/([A-Za-z0-9_./-]+)(?![A-Za-z0-9_./$-])}.freeze

def tracked_files
  Dir.chdir(ROOT) { `git ls-files -z`.split("\0") }
end

class StageTest < Minitest::Test
  # A copy of the checkout as git has it (so a file that exists only in a
  # developer's tree is not there), in a folder whose path has a space, plus a
  # binary per architecture: what a fresh clone would stage.
  def setup
    @tmp = Dir.mktmpdir("stage test")
    @root = File.join(@tmp, "a checkout")
    tracked_files.grep(%r{\A(scripts|deploy)/|\A\.env\z}).each do |rel|
      src = File.join(ROOT, rel)
      next unless File.file?(src) || File.symlink?(src)

      dst = File.join(@root, rel)
      FileUtils.mkdir_p(File.dirname(dst))
      if File.symlink?(src)
        File.symlink(File.readlink(src), dst)
      else
        FileUtils.cp(src, dst, preserve: true)
      end
    end
    MovieStage::BINARY.values.flatten.uniq.each do |bin|
      ARCHES.each do |arch|
        FileUtils.mkdir_p(File.join(@root, "dist", arch))
        File.write(File.join(@root, "dist", arch, bin), "#{bin} #{arch}")
      end
    end
    @settings = MovieDotenv.load(File.join(@root, ".env"))
  end

  def teardown
    FileUtils.rm_rf(@tmp)
  end

  def staged_tree(vm)
    dest = File.join(@tmp, vm)
    MovieStage.stage(@root, dest, vm)
    entries = {}
    Find.find(dest) do |path|
      next if path == dest

      entries[path.delete_prefix("#{dest}/")] = File.lstat(path)
    end
    [dest, entries]
  end

  def test_only_regular_files_and_folders
    MovieStage::ALL_VMS.each do |vm|
      _, entries = staged_tree(vm)
      odd = entries.reject { |_, st| st.file? || st.directory? }.keys
      assert_empty odd, "#{vm}: staged entries that are neither file nor folder"
    end
  end

  def test_exactly_the_files_of_the_vm_and_its_binary
    MovieStage::ALL_VMS.each do |vm|
      _, entries = staged_tree(vm)
      files = entries.select { |_, st| st.file? }.keys.sort
      bins = Array(MovieStage::BINARY.fetch(vm))
      expected = (MovieStage.files(vm) + bins.product(ARCHES).map { |b, a| "dist/#{a}/#{b}" }).sort
      assert_equal expected, files, vm
    end
  end

  def test_no_env_no_secret_no_other_deployment
    secrets = @settings.select { |k, _| MovieStage.secret?(k) }.values
    refute_empty secrets
    MovieStage::ALL_VMS.each do |vm|
      dest, entries = staged_tree(vm)
      entries.each_key do |rel|
        refute_equal ".env", File.basename(rel), "#{vm}: #{rel}"
        refute_match OTHER_DEPLOYMENTS, rel, "#{vm}: another deployment's file"
        path = File.join(dest, rel)
        next unless File.file?(path)

        text = File.binread(path)
        secrets.each { |s| refute_includes text, s, "#{vm}: #{rel} holds a secret of .env" }
      end
    end
  end

  # Not fewer: every deployment file the setup scripts name is staged for
  # the VM that runs them, everything the library sources is there, and every
  # VM deployment file in the repository goes to some VM (a new one cannot be
  # forgotten here).
  def test_every_file_provisioning_reads_is_staged
    MovieStage::ALL_VMS.each do |vm|
      files = MovieStage.files(vm)
      script = files.find { |f| f.start_with?("scripts/setup_") }
      File.read(File.join(ROOT, script)).scan(DEPLOY_REF).flatten.each do |ref|
        assert files.any? { |f| f == "deploy/#{ref}" || f.start_with?("deploy/#{ref}/") }, "#{vm}: #{script} reads deploy/#{ref}"
      end
      files.grep(/\.sh\z/).each do |lib|
        File.read(File.join(ROOT, lib)).scan(/^\s*(?:source|\.)\s+"?[^"\s]*?([a-z_]+\.sh)"?\s*$/).flatten.each do |sourced|
          assert files.any? { |f| File.basename(f) == sourced }, "#{vm}: #{lib} sources #{sourced}"
        end
      end
    end
    default = MovieStage::VMS.flat_map { |vm| MovieStage.files(vm) }
    all = MovieStage::ALL_VMS.flat_map { |vm| MovieStage.files(vm) }
    File.read(File.join(ROOT, "scripts/provision/common.sh")).scan(DEPLOY_REF).flatten.each do |ref|
      assert all.any? { |f| f == "deploy/#{ref}" || f.start_with?("deploy/#{ref}/") }, "scripts/provision/common.sh reads deploy/#{ref}"
    end
    vm_deploy = tracked_files.grep(%r{\Adeploy/}).grep_v(OTHER_DEPLOYMENTS) - HA_ONLY - NOT_ON_VMS
    assert_empty vm_deploy - all, "deployment files no VM receives"
    assert_empty HA_ONLY - all, "HA files no HA VM receives"
    assert_empty default & HA_ONLY, "the HA topology's files reach a default VM"
  end

  def test_a_symlink_is_refused
    link = File.join(@root, "deploy/systemd/api-gateway.service")
    FileUtils.rm_f(link)
    File.symlink("../../.env", link)
    e = assert_raises(MovieStage::Error) { MovieStage.stage(@root, File.join(@tmp, "x"), "gateway-vm") }
    assert_match(/api-gateway.service is a symlink/, e.message)
  end

  def test_a_missing_file_is_named
    FileUtils.rm_f(File.join(@root, "deploy/rabbitmq/enabled_plugins"))
    e = assert_raises(MovieStage::Error) { MovieStage.stage(@root, File.join(@tmp, "x"), "billing-vm") }
    assert_match(%r{deploy/rabbitmq/enabled_plugins is missing}, e.message)
  end

  def test_each_vm_gets_its_own_secrets_and_no_other
    given = []
    MovieStage::ALL_VMS.each do |vm|
      mine = MovieStage.settings(vm, @settings)
      secret_keys = mine.keys.select { |k| MovieStage.secret?(k) }
      assert_equal MovieStage::SECRETS.fetch(vm).sort, secret_keys.sort, vm
      others = @settings.select { |k, _| MovieStage.secret?(k) && !secret_keys.include?(k) }
      text = MovieStage.settings_text(mine)
      others.each do |k, v|
        next if mine.values.include?(v) # the same value under another name (GATEWAY_RABBITMQ_PASSWORD=${RABBITMQ_GATEWAY_PASSWORD})

        refute_includes text, v, "#{vm}: gets #{k}"
      end
      given |= secret_keys
    end
    defined = @settings.keys.select { |k| MovieStage.secret?(k) }
    assert_empty defined - given, "secrets of .env no VM receives"
  end

  def test_settings_file_reads_back_the_same_values
    values = {
      "PLAIN" => "abc", "SPACE" => "a b", "DOLLAR" => "x${NOT}y", "QUOTE" => "it's",
      "HASH" => "a#b", "EMPTY" => "", "BACKSLASH" => 'a\\b'
    }
    path = File.join(@tmp, "settings", "vm.env")
    MovieStage.write_settings(path, values)
    assert_equal values, MovieDotenv.load(path)
    assert_equal 0o600, File.stat(path).mode & 0o777
    assert_equal 0o700, File.stat(File.dirname(path)).mode & 0o777
    MovieStage::ALL_VMS.each do |vm|
      mine = MovieStage.settings(vm, @settings)
      MovieStage.write_settings(path, mine)
      assert_equal mine, MovieDotenv.load(path), vm
    end
  end

  # The VM names the Vagrantfile takes from .env are the ones staged for.
  def test_the_ha_vm_names_of_env_are_the_staged_ones
    assert_equal MovieStage::HA_VMS, (1..3).map { |i| @settings.fetch("HA_VM#{i}_NAME") }
  end

  def test_values_that_cannot_be_written_are_refused
    assert_raises(MovieStage::Error) { MovieStage.settings_text("K" => "a'b\"c") }
    assert_raises(MovieStage::Error) { MovieStage.settings_text("K" => "a\nb") }
    assert_raises(MovieStage::Error) { MovieStage.settings("no-vm", @settings) }
  end
end
