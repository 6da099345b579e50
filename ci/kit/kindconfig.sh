# Sourced by ci/kit/kit and ci/kit/smoke: the kind config a cluster is created
# with on this host. kind-configs/ stay the plain configs a user reads; what
# the host needs on top is added here, at cluster creation (svcconf's kind
# provider does the same in harness/src/cluster/kind.rs).

# host_cgroup_v1: /sys/fs/cgroup is not a cgroup2 filesystem (a cgroup v1 or
# hybrid host). kind nodes share the host's cgroups.
host_cgroup_v1() {
  [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]
}

CGROUP_V1_NOTE="host is cgroup v1: kubelet gets failCgroupV1: false"

# kind_config_cgroup_v1 <CONFIG >CONFIG: CONFIG with a kubeadmConfigPatches
# entry that sets the kubelet's failCgroupV1 to false (kubelets >= v1.35
# refuse cgroup v1 without it; older ones accept the field and ignore it).
# kind applies it to the init configuration; joining nodes read the kubelet
# configuration kubeadm uploaded. An existing top-level kubeadmConfigPatches
# list is extended, at its own indentation; other lists are left alone.
kind_config_cgroup_v1() {
  awk '
    function patch(indent) {
      print indent "- |"
      print indent "  kind: KubeletConfiguration"
      print indent "  failCgroupV1: false"
      merged = 1
    }
    pending && /^[[:space:]]*(#.*)?$/ { print; next }
    pending {
      match($0, /^[[:space:]]*/)
      indent = substr($0, 1, RLENGTH)
      if (substr($0, RLENGTH + 1, 1) != "-") { bad = 1; exit 1 }
      patch(indent); pending = 0; print; next
    }
    /^kubeadmConfigPatches:[[:space:]]*(#.*)?$/ { print; pending = 1; next }
    /^kubeadmConfigPatches:/ { bad = 1; exit 1 }
    { print }
    END {
      if (bad) { print "kind config: cannot add to this kubeadmConfigPatches (write it as a block list)" > "/dev/stderr"; exit 1 }
      if (pending) patch("  ")
      else if (!merged) { print "kubeadmConfigPatches:"; patch("  ") }
    }
  '
}

# kind_config_for_host CONFIG OUT: OUT is CONFIG as this host needs it; prints
# the note once per call when something was added.
kind_config_for_host() {
  if host_cgroup_v1; then
    kind_config_cgroup_v1 <"$1" >"$2"
    echo "$CGROUP_V1_NOTE" >&2
  else
    cp "$1" "$2"
  fi
}
