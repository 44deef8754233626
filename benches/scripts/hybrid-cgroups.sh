# Sourced by the bench scripts: runs a command where the hugetlb controller is a mounted
# v1 hierarchy. crun refuses a host whose cgroup2 mount lists a controller (hugetlb, on a
# hybrid host whose v1 hierarchies lack it). That mount, and even its mount point, exist
# only inside a private mount namespace where /sys/fs/cgroup is rebuilt on a fresh tmpfs
# (each hierarchy mounted again, plus hugetlb): a mount on the host's /sys/fs/cgroup
# propagates into other users' binds of it and outlives the script there.
# Needs $work (a scratch directory) and $hybrid (non-empty when the host needs this).
in_hugetlb_ns() { # CMD...: runs CMD where hugetlb is a mounted v1 hierarchy
    if [ -z "$hybrid" ]; then "$@"; return; fi
    unshare -m --propagation private sh -c '
        awk '"'"'$5 ~ "^/sys/fs/cgroup/" { split($0, a, " - "); split(a[2], b, " ");
            print $5, b[1], b[3] }'"'"' /proc/self/mountinfo > "$0"
        mount -t tmpfs -o mode=755 cgroup-root /sys/fs/cgroup || exit 125
        while read -r mp fstype opts; do
            mkdir -p "$mp"
            if [ "$fstype" = cgroup2 ]; then mount -t cgroup2 cgroup2 "$mp"
            else mount -t cgroup -o "$opts" cgroup "$mp"; fi || exit 125
        done < "$0"
        mkdir /sys/fs/cgroup/hugetlb
        mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || exit 125
        "$@"; rc=$?
        # this hierarchy is ours alone: leave no cgroup in it (it would keep it alive)
        find /sys/fs/cgroup/hugetlb -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
        exit $rc' "$work/cgroup-mounts" "$@"
}
release_hugetlb() {
    # an unmounted hierarchy lingers (hugetlb stays off cgroup2) until it is mounted and
    # unmounted once more with no child cgroup left
    for _ in 1 2 3 4 5; do
        awk '$1 == "hugetlb" && $2 != 0 { bad = 1 } END { exit !bad }' /proc/cgroups || break
        sleep 1
        in_hugetlb_ns true
    done
}
