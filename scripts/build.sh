#!/usr/bin/env bash
# Builds the three services as static x86_64 Linux binaries (musl, release,
# stripped) into dist/, the folder the VMs install from. Static binaries need
# nothing from the VM's libc or OpenSSL, so one build runs on any Debian box.
#
# Usage: scripts/build.sh            (build, or confirm dist/ is up to date)
# Env:   DIST_DIR (default <project>/dist), CARGO_BUILD_JOBS (cargo's own).
set -euo pipefail

TARGET=x86_64-unknown-linux-musl
BINARIES=(api-gateway inventory-app billing-worker)
PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST_DIR="${DIST_DIR:-$PROJECT_DIR/dist}"

say() { printf '==> build: %s\n' "$*"; }
die() { printf 'build: ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command as root when we are not (apt needs it); fails if we cannot.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

check_host() {
    local os arch
    os="$(uname -s)"
    arch="$(uname -m)"
    case "$os" in
        Linux) ;;
        Darwin)
            die "this host (macOS) cannot link x86_64 Linux musl binaries with the system toolchain.
  Install one of:
    - a musl cross toolchain: brew install filosottile/musl-cross/musl-cross
      then: rustup target add $TARGET
            export CC_x86_64_unknown_linux_musl=x86_64-linux-musl-gcc
            export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=x86_64-linux-musl-gcc
            and run scripts/build.sh again;
    - or build inside a Linux VM/WSL2 (Debian: apt install musl-tools) and copy dist/ here."
            ;;
        MINGW* | MSYS* | CYGWIN* | Windows_NT)
            die "Windows cannot build the Linux musl binaries natively.
  Use WSL2 with Debian/Ubuntu: apt install build-essential musl-tools, install rustup
  (https://rustup.rs), then run scripts/build.sh inside WSL2 from this project folder."
            ;;
        *) die "unsupported build host '$os'; build on x86_64 Linux with musl-tools installed." ;;
    esac
    if [ "$arch" != x86_64 ] && [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
        die "host is $arch: cross-compiling to $TARGET needs an x86_64 musl cross gcc.
  Set CC_x86_64_unknown_linux_musl and CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER to it
  (e.g. x86_64-linux-musl-gcc from musl-cross-make), or build on an x86_64 Linux host."
    fi
}

ensure_rust_target() {
    command -v cargo >/dev/null 2>&1 \
        || die "cargo not found. Install Rust with rustup: https://rustup.rs (then re-run)."
    local sysroot
    sysroot="$(rustc --print sysroot)"
    if [ -d "$sysroot/lib/rustlib/$TARGET" ]; then
        return 0
    fi
    command -v rustup >/dev/null 2>&1 \
        || die "Rust target $TARGET is missing and rustup is not available to add it."
    say "adding Rust target $TARGET"
    rustup target add "$TARGET"
}

ensure_musl_gcc() {
    # cc-rs (used by the bundled libpq build) looks for this exact name.
    if [ -n "${CC_x86_64_unknown_linux_musl:-}" ] || command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
        return 0
    fi
    if command -v apt-get >/dev/null 2>&1; then
        say "installing musl-tools (apt)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools \
            || { as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive \
                    apt-get install -y --no-install-recommends musl-tools; } \
            || die "could not install musl-tools; run: sudo apt-get install musl-tools"
    elif command -v dnf >/dev/null 2>&1; then
        die "x86_64-linux-musl-gcc not found. Install it: sudo dnf install musl-gcc (Fedora)."
    elif command -v pacman >/dev/null 2>&1; then
        die "x86_64-linux-musl-gcc not found. Install it: sudo pacman -S musl."
    else
        die "x86_64-linux-musl-gcc not found. Install your distribution's musl-tools / musl-gcc package."
    fi
    command -v x86_64-linux-musl-gcc >/dev/null 2>&1 \
        || die "musl-tools installed but x86_64-linux-musl-gcc is still not on PATH."
}

build() {
    local args=(build --release --target "$TARGET")
    local b
    for b in "${BINARIES[@]}"; do
        args+=(-p "$b" --bin "$b")
    done
    say "cargo ${args[*]}"
    (cd "$PROJECT_DIR" && cargo "${args[@]}")
}

install_and_check() {
    local target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in /*) ;; *) target_dir="$PROJECT_DIR/$target_dir" ;; esac
    local out="$target_dir/$TARGET/release"
    local b desc failed=0
    mkdir -p "$DIST_DIR"
    for b in "${BINARIES[@]}"; do
        [ -x "$out/$b" ] || die "cargo finished but $out/$b is missing"
        # Copy only when changed so dist/ timestamps (the Vagrant staleness
        # check) move only when the binary really did.
        if ! cmp -s "$out/$b" "$DIST_DIR/$b"; then
            install -m 0755 "$out/$b" "$DIST_DIR/$b.tmp"
            mv -f "$DIST_DIR/$b.tmp" "$DIST_DIR/$b"
        fi
        desc="$(file -b "$DIST_DIR/$b")"
        case "$desc" in
            *"statically linked"* | *"static-pie linked"*) ;;
            *) printf 'build: ERROR: %s is not static: %s\n' "$b" "$desc" >&2; failed=1; continue ;;
        esac
        case "$desc" in
            *"not stripped"*) printf 'build: ERROR: %s is not stripped: %s\n' "$b" "$desc" >&2; failed=1; continue ;;
        esac
        printf '    %-16s %6s KiB  %s\n' "$b" "$(( $(stat -c %s "$DIST_DIR/$b") / 1024 ))" "$desc"
    done
    [ "$failed" -eq 0 ] || die "some binaries failed the static/stripped check"
    # The Vagrantfile compares the sources' times with this stamp to decide
    # whether dist/ is stale (the binaries keep their time when unchanged).
    touch "$DIST_DIR/.build-stamp"
}

main() {
    check_host
    command -v file >/dev/null 2>&1 || die "'file' is needed to check the binaries (apt install file)."
    ensure_rust_target
    ensure_musl_gcc
    build
    install_and_check
    say "OK: static binaries in $DIST_DIR"
}

main "$@"
