// Command runc-wrapper is an OCI runtime for dockerd that strips capabilities
// the host's bounding set does not hold, then hands over to the real runc.
//
// Sandboxes that run dockerd without CAP_SYS_RESOURCE make every
// `docker run --privileged` fail ("unable to apply caps"), and kind runs every
// node privileged. Dropping the missing capabilities from the bundle's
// config.json (create/run) and from the --process file (exec) is the smallest
// change that lets such containers start; nothing else in the spec is touched.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames maps capability numbers to the names runc expects in a spec.
var capNames = map[int]string{
	0: "CAP_CHOWN", 1: "CAP_DAC_OVERRIDE", 2: "CAP_DAC_READ_SEARCH", 3: "CAP_FOWNER",
	4: "CAP_FSETID", 5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 8: "CAP_SETPCAP",
	9: "CAP_LINUX_IMMUTABLE", 10: "CAP_NET_BIND_SERVICE", 11: "CAP_NET_BROADCAST",
	12: "CAP_NET_ADMIN", 13: "CAP_NET_RAW", 14: "CAP_IPC_LOCK", 15: "CAP_IPC_OWNER",
	16: "CAP_SYS_MODULE", 17: "CAP_SYS_RAWIO", 18: "CAP_SYS_CHROOT", 19: "CAP_SYS_PTRACE",
	20: "CAP_SYS_PACCT", 21: "CAP_SYS_ADMIN", 22: "CAP_SYS_BOOT", 23: "CAP_SYS_NICE",
	24: "CAP_SYS_RESOURCE", 25: "CAP_SYS_TIME", 26: "CAP_SYS_TTY_CONFIG", 27: "CAP_MKNOD",
	28: "CAP_LEASE", 29: "CAP_AUDIT_WRITE", 30: "CAP_AUDIT_CONTROL", 31: "CAP_SETFCAP",
	32: "CAP_MAC_OVERRIDE", 33: "CAP_MAC_ADMIN", 34: "CAP_SYSLOG", 35: "CAP_WAKE_ALARM",
	36: "CAP_BLOCK_SUSPEND", 37: "CAP_AUDIT_READ", 38: "CAP_PERFMON", 39: "CAP_BPF",
	40: "CAP_CHECKPOINT_RESTORE",
}

// missingCaps lists the known capabilities absent from this process's bounding set.
func missingCaps() map[string]bool {
	missing := map[string]bool{}
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return missing
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		bnd, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
		if err != nil {
			return missing
		}
		for bit, name := range capNames {
			if bnd&(1<<uint(bit)) == 0 {
				missing[name] = true
			}
		}
	}
	return missing
}

// stripCaps removes missing capabilities from every list under "capabilities".
func stripCaps(caps map[string]any, missing map[string]bool) {
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if s, ok := c.(string); ok && missing[s] {
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
}

// rewrite edits a JSON file in place; process is the path to the "process"
// object inside it (empty for a --process file, which is that object).
func rewrite(path string, nested bool, missing map[string]bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	proc := doc
	if nested {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		proc = p
	}
	caps, ok := proc["capabilities"].(map[string]any)
	if !ok {
		return nil
	}
	stripCaps(caps, missing)
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// flagValue finds "--name V", "--name=V", "-s V" after the subcommand.
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		switch {
		case a == long || a == short:
			if i+1 < len(args) {
				return args[i+1], true
			}
		case strings.HasPrefix(a, long+"="):
			return strings.TrimPrefix(a, long+"="), true
		}
	}
	return "", false
}

// subcommand returns the index of the first runc subcommand we care about.
func subcommand(args []string) (string, int) {
	for i, a := range args {
		switch a {
		case "create", "run", "exec":
			return a, i
		}
	}
	return "", -1
}

func realRunc() string {
	if p := os.Getenv("SVCCONF_REAL_RUNC"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"} {
		if self, _ := os.Executable(); p != self {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return "runc"
}

func main() {
	args := os.Args[1:]
	missing := missingCaps()
	if len(missing) > 0 {
		cmd, i := subcommand(args)
		rest := []string{}
		if i >= 0 {
			rest = args[i+1:]
		}
		var err error
		switch cmd {
		case "create", "run":
			bundle, ok := flagValue(rest, "--bundle", "-b")
			if !ok {
				bundle, _ = os.Getwd()
			}
			err = rewrite(filepath.Join(bundle, "config.json"), true, missing)
		case "exec":
			if p, ok := flagValue(rest, "--process", "-p"); ok {
				err = rewrite(p, false, missing)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "runc-wrapper: %v\n", err)
			os.Exit(1)
		}
	}
	runc := realRunc()
	if err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}
