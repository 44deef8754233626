#!/usr/bin/env bash
# The README's main job: installs what is missing, builds `longshore`, makes a busybox
# image from Debian's busybox-static (imported, so no registry or internet is needed), and
# shows the seed's everyday flow: run --rm, run -d -p of a small web server, ps, logs,
# exec, a request to the published port, stop, rm, images. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
L=$(bash scripts/build-longshore.sh)
export LONGSHORE_ROOT=${LONGSHORE_ROOT:-/var/lib/longshore}
work=$(mktemp -d /tmp/longshore-demo-XXXXXX)
cleanup() { "$L" rm -f demo-web >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
say() { printf '\n$ %s\n' "$*"; }

# a busybox root filesystem: the static binary, its applets, passwd and group
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/www" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/rootfs/etc/group"
echo '<h1>hello from longshore</h1>' >"$work/rootfs/www/index.html"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

say longshore import -c 'CMD ["sh"]' busybox.tar busybox:latest
"$L" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox:latest
say longshore images
"$L" images
say longshore run --rm busybox echo hello from a container
"$L" run --rm busybox echo hello from a container
say longshore run -d --name demo-web -p 8080:80 busybox httpd -f -v -p 80 -h /www
"$L" run -d --name demo-web -p 8080:80 busybox httpd -f -v -p 80 -h /www
say longshore ps
"$L" ps
say longshore exec demo-web ls /www
"$L" exec demo-web ls /www
# the published port, through the host's own address (nftables DNAT)
host_ip=$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1)
say curl http://"$host_ip":8080/
for _ in 1 2 3 4 5 6 7 8 9 10; do curl -s -m 2 "http://$host_ip:8080/" && break; sleep 0.2; done
say longshore logs demo-web
"$L" logs demo-web
say longshore stop demo-web
"$L" stop -t 2 demo-web
say longshore ps -a
"$L" ps -a
say longshore rm demo-web
"$L" rm demo-web
say longshore images
"$L" images
