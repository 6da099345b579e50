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

# kind_config_add_patch TEXT <CONFIG >CONFIG: CONFIG with TEXT as the last
# entry of its top-level kubeadmConfigPatches block list (made when there is
# none). Last, because kind merges the patches in order and a later patch's
# list replaces an earlier one's (two ClusterConfiguration patches setting
# controllerManager.extraArgs keep only the later's). Other lists are left
# alone; every line of CONFIG stays, in order.
kind_config_add_patch() {
  awk -v text="$1" '
    function patch(at,   n, lines, i) {
      if (at == "") at = "  "
      print at "- |"
      n = split(text, lines, "\n")
      for (i = 1; i <= n; i++) if (lines[i] != "") print at "  " lines[i]
      merged = 1
    }
    # The list ends at the next top-level key.
    inlist && /^[^[:space:]#-]/ { patch(indent); inlist = 0 }
    inlist && !seen && /^[[:space:]]*-/ { match($0, /^[[:space:]]*/); indent = substr($0, 1, RLENGTH); seen = 1 }
    /^kubeadmConfigPatches:[[:space:]]*(#.*)?$/ { print; inlist = 1; next }
    /^kubeadmConfigPatches:/ { bad = 1; exit 1 }
    { print }
    END {
      if (bad) { print "kind config: cannot add to this kubeadmConfigPatches (write it as a block list)" > "/dev/stderr"; exit 1 }
      if (inlist) patch(indent)
      else if (!merged) { print "kubeadmConfigPatches:"; patch("  ") }
    }
  '
}

# kind_config_cgroup_v1 <CONFIG >CONFIG: CONFIG with a kubeadmConfigPatches
# entry that sets the kubelet's failCgroupV1 to false (kubelets >= v1.35
# refuse cgroup v1 without it; older ones accept the field and ignore it).
# kind applies it to the init configuration; joining nodes read the kubelet
# configuration kubeadm uploaded.
kind_config_cgroup_v1() {
  kind_config_add_patch "kind: KubeletConfiguration
failCgroupV1: false"
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
