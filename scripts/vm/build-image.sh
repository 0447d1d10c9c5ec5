#!/usr/bin/env bash
# Builds (or finds in the cache) the Debian 12 image vm-test boots, from Debian
# packages only: debootstrap from this machine's apt mirror, then the packages of
# scripts/vm/packages.txt, then the files of scripts/vm/image/.
# Prints the image directory on stdout: base.qcow2 (root fs on the whole disk, no
# partition table), vmlinuz, initrd.img, packages.lst.
# The directory name is a hash of every input, so changing an input rebuilds.
# VM_ARCH=arm64 builds a Debian arm64 image instead (for qemu-system-aarch64): the
# first debootstrap stage here, every later step (second stage, apt, useradd...)
# run by qemu-aarch64-static through a binfmt_misc private to a user namespace,
# so this machine's own binfmt_misc is never touched.
#   usage: scripts/vm/build-image.sh [--print-hash]
set -euo pipefail
# shellcheck source=scripts/vm/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE_SIZE=${VM_IMAGE_SIZE:-6G}
SUITE=bookworm
# VM_IMAGE_FLAVOR=stock: made like the real debian/bookworm64 box instead: none of
# the packages provisioning installs (they come from the mirror at first
# provisioning), ifupdown + isc-dhcp-client networking, the apt timers left on.
# VM_IMAGE_FLAVOR=ha (scripts/vm-test.sh ha): the test image plus the
# packages of scripts/vm/packages-ha.txt (pg_auto_failover, keepalived).
FLAVOR=${VM_IMAGE_FLAVOR:-test}
case $FLAVOR in
test) PREFIX=image ;;
stock) PREFIX=stock-image ;;
ha) PREFIX=ha-image ;;
*) mp::die "VM_IMAGE_FLAVOR must be test, stock or ha" ;;
esac
ARCH=${VM_ARCH:-amd64}
case $ARCH in
amd64) ;;
arm64) PREFIX=$PREFIX-arm64 ;;
*) mp::die "VM_ARCH must be amd64 or arm64" ;;
esac

if [[ $FLAVOR == stock ]]; then
	# Everything above the "What provisioning installs" section of packages.txt.
	mapfile -t PACKAGES < <(sed -e '/^# What provisioning installs/,$d' -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/[[:space:]]//g' "$VM_LIB_DIR/packages.txt")
	PACKAGES+=(ifupdown isc-dhcp-client)
else
	mapfile -t PACKAGES < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/[[:space:]]//g' "$VM_LIB_DIR/packages.txt")
fi
if [[ $FLAVOR == ha ]]; then
	mapfile -t -O "${#PACKAGES[@]}" PACKAGES < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e 's/[[:space:]]//g' "$VM_LIB_DIR/packages-ha.txt")
fi
# packages.txt names the amd64 kernel; every other package is the same on arm64.
PACKAGES=("${PACKAGES[@]/#linux-image-cloud-amd64/linux-image-cloud-$ARCH}")
MIRROR=$(apt_mirror_for "$SUITE")
[[ -n $MIRROR ]] || MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=$(apt_mirror_for "$SUITE-security")

image_hash() {
	{
		printf 'suite=%s mirror=%s security=%s size=%s flavor=%s arch=%s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$IMAGE_SIZE" "$FLAVOR" "$ARCH"
		cat "$VM_LIB_DIR/packages.txt" "$VM_LIB_DIR/build-image.sh"
		# Only the ha image depends on its list.
		[[ $FLAVOR != ha ]] || cat "$VM_LIB_DIR/packages-ha.txt"
		(cd "$VM_LIB_DIR/image" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
		cat "$(vagrant_insecure_pubkey)"
	} | sha256sum | cut -c1-16
}

# emulated CMD...: runs CMD as it is for amd64. For arm64: as root of a user
# namespace whose uids and gids 0-65535 are the same numbers outside (so files
# keep their owners), with a pid and mount namespace and a binfmt_misc of its
# own (Linux >= 6.7) that hands aarch64 ELF files to qemu-aarch64-static
# (flag F: the kernel opens the emulator now, so it works inside any chroot).
emulated() {
	if [[ $ARCH == amd64 ]]; then
		"$@"
		return
	fi
	local fifo pid rc=0 i
	fifo=$(mktemp -u) && mkfifo "$fifo" && mkdir "$fifo.binfmt"
	# shellcheck disable=SC2016 # expanded by the inner bash
	unshare --user --mount --propagation private --pid --fork -- bash -c '
		read -r _ <"$0"
		d=$0.binfmt
		mount -t binfmt_misc binfmt_misc "$d"
		printf "%s" ":mp-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:OCF" >"$d/register"
		exec "$@"' "$fifo" "$@" &
	pid=$!
	# The map can be written once unshare has made the namespace.
	for ((i = 0; i < 200; i++)); do
		[[ $(readlink "/proc/$pid/ns/user" 2>/dev/null) != "$(readlink /proc/self/ns/user)" ]] && break
		sleep 0.05
	done
	printf '0 0 65536\n' >"/proc/$pid/uid_map"
	printf '0 0 65536\n' >"/proc/$pid/gid_map"
	printf 'go\n' >"$fifo"
	wait "$pid" || rc=$?
	rm -f "$fifo"
	rmdir "$fifo.binfmt"
	return "$rc"
}

build_rootfs() {
	local rootfs=$1 pubkey
	pubkey=$(vagrant_insecure_pubkey) || mp::die "Vagrant's insecure key not found (Debian package vagrant)"

	if [[ -f $rootfs/.mp-base-done ]]; then
		log "VM_IMAGE_RESUME=1: the base system of an interrupted build is there, debootstrap skipped"
	elif [[ $ARCH == amd64 ]]; then
		log "debootstrap $SUITE ($ARCH) from $MIRROR (minbase; output in $BUILD_LOG)"
		timeout 1800 debootstrap --variant=minbase --include=apt-utils,ca-certificates "$SUITE" "$rootfs" "$MIRROR" >>"$BUILD_LOG" 2>&1 ||
			mp::die "debootstrap failed: see $BUILD_LOG"
	else
		log "debootstrap $SUITE ($ARCH) from $MIRROR (minbase; output in $BUILD_LOG)"
		timeout 1800 debootstrap --arch="$ARCH" --foreign --variant=minbase --include=apt-utils,ca-certificates \
			"$SUITE" "$rootfs" "$MIRROR" >>"$BUILD_LOG" 2>&1 || mp::die "debootstrap (first stage) failed: see $BUILD_LOG"
		log "debootstrap second stage under qemu-aarch64-static"
		# container=lxc: debootstrap's own test of mknod, which a user namespace may
		# not do (the first stage made the device nodes already).
		# shellcheck disable=SC2016 # expanded by the inner bash
		emulated timeout 3600 bash -euo pipefail -c '
			mount -t proc proc "$1/proc"
			mount --rbind /dev "$1/dev"
			container=lxc chroot "$1" /debootstrap/debootstrap --second-stage
		' stage2 "$rootfs" >>"$BUILD_LOG" 2>&1 || mp::die "debootstrap (second stage) failed: see $BUILD_LOG"
	fi
	touch "$rootfs/.mp-base-done"

	{
		printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$MIRROR" "$SUITE" "$SUITE"
		if [[ -n $SECURITY_MIRROR ]]; then
			printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
				"$SECURITY_MIRROR" "$SUITE"
		fi
	} >"$rootfs/etc/apt/sources.list.d/debian.sources"
	rm -f "$rootfs/etc/apt/sources.list"
	# Nothing starts inside the chroot; systemd starts what is enabled when the VM boots.
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 755 "$rootfs/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$rootfs/etc/resolv.conf"

	log "apt-get install in the chroot: ${PACKAGES[*]}"
	# A private mount namespace: /proc, /sys and /dev vanish with it, even on failure.
	# (arm64: no /sys, which a user namespace may not mount; apt does not need it.)
	# shellcheck disable=SC2016 # expanded by the inner bash
	emulated timeout 5400 unshare --mount --propagation private -- bash -euo pipefail -c '
		r=$1 arch=$2; shift 2
		mount -t proc proc "$r/proc"
		if [[ $arch == amd64 ]]; then
			mount -t sysfs sys "$r/sys"
			mount --bind /dev "$r/dev"
		else
			# A user namespace may bind /dev only with the mounts under it.
			mount --rbind /dev "$r/dev"
		fi
		mount -t devpts devpts "$r/dev/pts" -o newinstance,ptmxmode=0666
		export DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8
		chroot "$r" apt-get update -q
		chroot "$r" apt-get install -y -q --no-install-recommends "$@"
		chroot "$r" apt-get clean
	' build "$rootfs" "$ARCH" "${PACKAGES[@]}" >>"$BUILD_LOG" 2>&1 || mp::die "apt-get in the chroot failed: see $BUILD_LOG"

	log "configuring the image"
	(cd "$VM_LIB_DIR/image" && tar -cf - --owner=root --group=root .) | tar -xf - -C "$rootfs" --no-same-owner --no-overwrite-dir
	chmod 440 "$rootfs/etc/sudoers.d/vagrant"
	rm -f "$rootfs/usr/sbin/policy-rc.d" "$rootfs"/etc/ssh/ssh_host_* "$rootfs/.mp-base-done"
	# Empty machine-id: systemd makes a new one on each VM's first boot.
	: >"$rootfs/etc/machine-id"
	rm -f "$rootfs/var/lib/dbus/machine-id"
	: >"$rootfs/etc/resolv.conf"
	printf 'localhost\n' >"$rootfs/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
	printf '/dev/vda\t/\text4\tdefaults,errors=remount-ro\t0\t1\n' >"$rootfs/etc/fstab"

	emulated chroot "$rootfs" useradd --create-home --shell /bin/bash vagrant
	install -d -m 700 -o 0 -g 0 "$rootfs/home/vagrant/.ssh"
	install -m 600 "$pubkey" "$rootfs/home/vagrant/.ssh/authorized_keys"
	emulated chroot "$rootfs" chown -R vagrant:vagrant /home/vagrant/.ssh

	if [[ $FLAVOR == stock ]]; then
		# As the box has it: ifupdown, the first NIC (eth0, net.ifnames=0) by DHCP;
		# Vagrant adds the private NIC's stanza (here: the seed disk does).
		printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n' \
			>"$rootfs/etc/network/interfaces"
		rm -f "$rootfs/etc/systemd/network/90-dhcp.network"
		emulated chroot "$rootfs" systemctl enable vm-seed.service apt-daily.timer apt-daily-upgrade.timer >>"$BUILD_LOG" 2>&1
	else
		emulated chroot "$rootfs" systemctl enable systemd-networkd.service vm-seed.service >>"$BUILD_LOG" 2>&1
		# Timers that only cost CPU under TCG during a test.
		emulated chroot "$rootfs" systemctl disable apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
			e2scrub_all.timer fstrim.timer man-db.timer >>"$BUILD_LOG" 2>&1 || true
		# One image for the three VMs: the monitoring packages' units start only
		# where provisioning enables them (Prometheus and Alertmanager on
		# gateway-vm alone, the PostgreSQL exporter beside a database).
		emulated chroot "$rootfs" systemctl disable prometheus.service prometheus-alertmanager.service \
			prometheus-node-exporter.service prometheus-postgres-exporter.service >>"$BUILD_LOG" 2>&1 || true
	fi
	# shellcheck disable=SC2016 # a dpkg-query format
	emulated chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$rootfs/../packages.lst"
}

main() {
	local hash dir tmp
	ensure_host_tools image
	hash=$(image_hash)
	if [[ ${1:-} == --print-hash ]]; then
		printf '%s\n' "$hash"
		return 0
	fi
	dir=$VM_CACHE/$PREFIX-$hash
	mkdir -p "$VM_CACHE"
	exec 9>"$VM_CACHE/image.lock"
	timeout 3600 flock 9 || mp::die "another image build holds $VM_CACHE/image.lock"
	if [[ -f $dir/done ]]; then
		log "image cache hit: $dir"
		printf '%s\n' "$dir"
		return 0
	fi
	log "image cache miss: building $dir"
	tmp=$VM_CACHE/build-$hash
	# VM_IMAGE_RESUME=1 keeps the base system of a build that failed later (the
	# arm64 one takes long under emulation).
	if [[ ${VM_IMAGE_RESUME:-0} == 1 && -f $tmp/rootfs/.mp-base-done ]]; then
		rm -rf "$dir"
	else
		rm -rf "$tmp" "$dir"
		mkdir -p "$tmp"
	fi
	BUILD_LOG=$VM_CACHE/image-build.log
	: >"$BUILD_LOG"
	build_rootfs "$tmp/rootfs"
	mkdir -p "$dir"
	cp -L "$tmp/rootfs/vmlinuz" "$dir/vmlinuz"
	cp -L "$tmp/rootfs/initrd.img" "$dir/initrd.img"
	mv "$tmp/packages.lst" "$dir/packages.lst"
	log "mkfs.ext4 -d rootfs ($IMAGE_SIZE, sparse) and qemu-img convert to qcow2"
	truncate -s "$IMAGE_SIZE" "$tmp/root.raw"
	mkfs.ext4 -q -L vmroot -d "$tmp/rootfs" "$tmp/root.raw"
	qemu-img convert -O qcow2 "$tmp/root.raw" "$dir/base.qcow2"
	rm -rf "$tmp"
	# Older images are useless once the inputs changed.
	find "$VM_CACHE" -maxdepth 1 -name "$PREFIX-*" ! -name "$PREFIX-$hash" -exec rm -rf {} +
	touch "$dir/done"
	log "image ready: $dir ($(du -sh "$dir/base.qcow2" | cut -f1) qcow2)"
	printf '%s\n' "$dir"
}

main "$@"
