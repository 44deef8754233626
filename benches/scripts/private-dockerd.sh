# shellcheck shell=bash
# A private dockerd for the compare scripts (sourced): its own data root, exec root,
# socket, pidfile and containerd namespace under a work directory, inside a network
# namespace so that its bridge and iptables rules never touch the host's. Debian's
# docker.io; never the system's dockerd.
#
#   dockerd_mark_cgroups                 before anything runs: which cgroup parents exist
#   dockerd_start WORK NETNS IMAGE_TAR   starts it, loads IMAGE_TAR (a `docker save`
#                                        archive); sets D ("docker -H unix://...") and
#                                        dockerd_pid, or leaves D empty saying why
#   dockerd_stop                         removes its containers, stops it, removes the
#                                        cgroup parent it made (call from the EXIT trap)
D=
dockerd_pid=
dockerd_sock=
dockerd_had_cgroups=

dockerd_mark_cgroups() {
    dockerd_had_cgroups=
    ls -d /sys/fs/cgroup/*/docker >/dev/null 2>&1 && dockerd_had_cgroups=1
    return 0
}

dockerd_start() {
    local work=$1 ns=$2 image=$3
    D=
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        echo "no dockerd/docker installed: no docker column" >&2
        return 0
    fi
    dockerd_sock=$work/docker.sock
    nsenter --net="/run/netns/$ns" dockerd --data-root "$work/docker" --exec-root "$work/dexec" \
        -H "unix://$dockerd_sock" --pidfile "$work/docker.pid" \
        --containerd-namespace lsbench --containerd-plugins-namespace lsbench-plugins \
        >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    D="docker -H unix://$dockerd_sock"
    for _ in $(seq 200); do $D version >/dev/null 2>&1 && break; sleep 0.1; done
    if ! $D load -q -i "$image" >/dev/null; then
        echo "dockerd did not start (see below); no docker column" >&2
        tail -5 "$work/dockerd.log" >&2
        D=
    fi
}

dockerd_stop() {
    if [ -n "$D" ]; then
        # shellcheck disable=SC2046
        $D rm -f $($D ps -aq) >/dev/null 2>&1 || true
    fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
        dockerd_pid=
    fi
    # the cgroup parent dockerd made (docker/), when it was not there before
    if [ -z "$dockerd_had_cgroups" ]; then
        for h in /sys/fs/cgroup/*/; do
            [ -d "${h}docker" ] && find "${h}docker" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    fi
    return 0
}
