# shellcheck shell=bash
# Docker helpers for the containers test (scripts/containers-test.sh): a
# dockerd of our own when none runs, the base image when no registry can give
# it, and the compose command of this machine. Sourced after lib/common.sh (and so lib/mp.sh).

# The base image every Dockerfile under deploy/docker starts from. Users pull
# it; here no registry is reachable, so docker_base_image builds it.
DOCKER_BASE_IMAGE=debian:bookworm-slim
DOCKER_STATE=${DOCKER_STATE:-$MP_ROOT/.state/containers}
DOCKERD_PID_FILE=$DOCKER_STATE/dockerd.pid
# Set when this checkout started dockerd (and so must stop it).
DOCKERD_STARTED=
# The FORWARD policy of the root namespace before our dockerd changed it.
DOCKER_FORWARD_POLICY=

docker_ok() { docker info >/dev/null 2>&1; }

# docker_up: uses the running dockerd, or starts one (pid in DOCKERD_PID_FILE).
docker_up() {
	if docker_ok; then
		mp::log::info "using the running dockerd"
		return 0
	fi
	command -v dockerd >/dev/null || mp::die "dockerd not found (apt-get install docker.io)"
	mkdir -p "$DOCKER_STATE"
	DOCKER_FORWARD_POLICY=$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
	mp::log::info "starting dockerd (log: $DOCKER_STATE/dockerd.log)"
	dockerd -p "$DOCKERD_PID_FILE" >"$DOCKER_STATE/dockerd.log" 2>&1 &
	DOCKERD_STARTED=$!
	mp::wait_until 60 "dockerd to answer" docker_ok || {
		tail -n 20 "$DOCKER_STATE/dockerd.log" >&2
		mp::die "dockerd did not start"
	}
}

# docker_down: stops the dockerd docker_up started (never another one) and
# gives the root namespace back its FORWARD policy, which dockerd set to DROP.
docker_down() {
	[[ -n $DOCKERD_STARTED ]] || return 0
	mp::log::info "stopping the dockerd this test started (pid $DOCKERD_STARTED)"
	mp::stop_pid "$DOCKERD_STARTED" dockerd 30
	DOCKERD_STARTED=
	if [[ -n $DOCKER_FORWARD_POLICY && $DOCKER_FORWARD_POLICY != DROP ]]; then
		iptables -P FORWARD "$DOCKER_FORWARD_POLICY" || mp::log::warn "could not restore the FORWARD policy"
	fi
}

# docker_base_image: makes debian:bookworm-slim from Debian's packages when
# the daemon does not have it (debootstrap minbase + docker import).
docker_base_image() {
	local dir
	docker image inspect "$DOCKER_BASE_IMAGE" >/dev/null 2>&1 && return 0
	mp::pkg::install debootstrap
	dir=$DOCKER_STATE/rootfs
	mp::log::info "building $DOCKER_BASE_IMAGE with debootstrap (no registry here)"
	rm -rf "$dir"
	debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$DOCKER_STATE/debootstrap.log" 2>&1 || {
		tail -n 20 "$DOCKER_STATE/debootstrap.log" >&2
		mp::die "debootstrap failed"
	}
	# As the real slim image: no documentation, manuals or translations,
	# now or from packages installed later, and no apt lists or caches.
	cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/lintian/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/locale/*
	EOF
	find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	rm -rf "$dir"/usr/share/{man,groff,info,lintian,linda,locale}/* \
		"$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
	tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$DOCKER_BASE_IMAGE" >/dev/null
	rm -rf "$dir"
}
