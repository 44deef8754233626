#!/usr/bin/env bash
# Installs what building and testing longshore needs on Debian 12, as root, when it is
# missing: the system packages (apt) and a Rust toolchain check. Safe to run again: it
# does nothing when everything is there. The README's two commands call it first.
set -euo pipefail
# busybox-static: test and demo root filesystems; libseccomp-dev: seccomp; libisal-dev and
# isal: ISA-L's fast gzip inflate (libgraph falls back to zlib-rs without it); pkg-config, gcc:
# -sys crates; iproute2, nftables, iptables: networking; runc, crun, containerd: comparisons
# and cross-checks; docker-registry, skopeo, apache2-utils (htpasswd): registry tests;
# pigz, hyperfine, strace: benches; procps: ps for the leak check; git, curl, ca-certificates.
PACKAGES=(
    busybox-static libseccomp-dev libisal-dev isal pkg-config gcc libc6-dev iproute2 nftables
    iptables procps runc crun containerd docker-registry skopeo apache2-utils pigz hyperfine
    strace ca-certificates git curl
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages ${missing[*]}; run as root (apt-get install needs it)" >&2
        exit 1
    fi
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker-registry's and containerd's packaged services are not wanted: tests start their own
# on free loopback ports.
for svc in docker-registry containerd; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    # no Rust: rustup's installer from static.rust-lang.org (checked against its published
    # sha256), the stable toolchain, minimal profile, into ~/.cargo and ~/.rustup
    if [ "$(id -u)" = 0 ] || [ -w "${HOME:-/nonexistent}" ]; then
        arch=$(uname -m)
        url="https://static.rust-lang.org/rustup/dist/${arch}-unknown-linux-gnu/rustup-init"
        tmp=$(mktemp -d)
        echo "== installing Rust (rustup, stable, minimal profile)"
        if curl -sSfL --retry 3 -o "$tmp/rustup-init" "$url" &&
            curl -sSfL --retry 3 -o "$tmp/rustup-init.sha256" "$url.sha256" &&
            [ "$(sha256sum "$tmp/rustup-init" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$tmp/rustup-init.sha256")" ]; then
            chmod +x "$tmp/rustup-init"
            if ! out=$("$tmp/rustup-init" -y -q --no-modify-path --profile minimal \
                --default-toolchain stable --component rustfmt,clippy 2>&1); then
                echo "$out" >&2
            fi
            export PATH="$HOME/.cargo/bin:$PATH"
            command -v cargo >/dev/null && echo "== $(cargo --version) in $HOME/.cargo"
        fi
        rm -rf "$tmp"
    fi
fi
if ! command -v cargo >/dev/null; then
    echo "deps: cargo not found and rustup could not install it; install Rust 1.88 or newer (https://rustup.rs), then run again" >&2
    exit 1
fi
