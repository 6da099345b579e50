// Command kindnetd is svcconf's stand-in for kind's default CNI agent, whose
// module the Go module proxy does not serve.
//
// It does the three things a kind cluster needs from its CNI and nothing more:
// it writes this node's CNI config (ptp + host-local over the node's podCIDRs),
// routes every other node's podCIDRs through that node's InternalIP of the same
// family, and masquerades pod traffic that leaves the cluster's pod range. Traffic
// between pods keeps its source address, which svcconf's source-IP cases rely on.
// IPv4, IPv6 and dual-stack clusters alike: kind hands POD_SUBNET as one CIDR or
// as a comma-separated pair, one per family.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

const cniConfFile = "10-kindnet.conflist"

type agent struct {
	nodeName   string
	podSubnets []*net.IPNet
	confDir    string
}

func main() {
	a := agent{nodeName: os.Getenv("NODE_NAME"), confDir: envOr("CNI_CONF_DIR", "/etc/cni/net.d")}
	if a.nodeName == "" {
		log.Fatal("NODE_NAME is not set")
	}
	for _, c := range strings.Split(os.Getenv("POD_SUBNET"), ",") {
		_, subnet, err := net.ParseCIDR(strings.TrimSpace(c))
		if err != nil {
			log.Fatalf("POD_SUBNET %q: %v", os.Getenv("POD_SUBNET"), err)
		}
		a.podSubnets = append(a.podSubnets, subnet)
	}

	// kind hands us the API server's address so we need not wait for
	// kube-proxy to program the kubernetes Service first.
	if ep := os.Getenv("CONTROL_PLANE_ENDPOINT"); ep != "" {
		if host, port, err := net.SplitHostPort(ep); err == nil {
			os.Setenv("KUBERNETES_SERVICE_HOST", host)
			os.Setenv("KUBERNETES_SERVICE_PORT", port)
		}
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatalf("in-cluster config: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("client: %v", err)
	}

	for _, subnet := range a.podSubnets {
		if err := ensureMasquerade(subnet); err != nil {
			log.Fatalf("masquerade rule: %v", err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes().Informer()
	handle := func(obj any) {
		if node, ok := obj.(*corev1.Node); ok {
			if err := a.reconcile(node); err != nil {
				log.Printf("node %s: %v", node.Name, err)
			}
		}
	}
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		log.Fatalf("node handler: %v", err)
	}
	factory.Start(ctx.Done())
	log.Printf("kindnetd (svcconf) on %s, pod subnets %v", a.nodeName, a.podSubnets)
	<-ctx.Done()
	factory.Shutdown()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// reconcile writes our CNI config for our own node and routes for any other.
func (a *agent) reconcile(node *corev1.Node) error {
	cidrs := podCIDRs(node)
	if len(cidrs) == 0 {
		return nil // the node-ipam controller has not assigned one yet
	}
	if node.Name == a.nodeName {
		return a.writeCNIConfig(cidrs)
	}
	for _, cidr := range cidrs {
		gw := internalIP(node, isIPv4(cidr.IP))
		if gw == nil {
			return fmt.Errorf("no InternalIP of the family of %s", cidr)
		}
		route := netlink.Route{Dst: cidr, Gw: gw}
		if err := netlink.RouteReplace(&route); err != nil {
			return fmt.Errorf("route %s via %s: %w", cidr, gw, err)
		}
		log.Printf("route %s via %s (%s)", cidr, gw, node.Name)
	}
	return nil
}

func isIPv4(ip net.IP) bool { return ip.To4() != nil }

// podCIDRs are the node's pod ranges, one per family, primary first.
func podCIDRs(node *corev1.Node) []*net.IPNet {
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	var out []*net.IPNet
	for _, c := range cidrs {
		if _, n, err := net.ParseCIDR(c); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func internalIP(node *corev1.Node, v4 bool) net.IP {
	for _, addr := range node.Status.Addresses {
		if addr.Type != corev1.NodeInternalIP {
			continue
		}
		if ip := net.ParseIP(addr.Address); ip != nil && isIPv4(ip) == v4 {
			return ip
		}
	}
	return nil
}

// writeCNIConfig atomically writes the conflist the kubelet's CNI loads.
func (a *agent) writeCNIConfig(cidrs []*net.IPNet) error {
	var ranges, routes []any
	for _, cidr := range cidrs {
		ranges = append(ranges, []any{map[string]any{"subnet": cidr.String()}})
		dst := "::/0"
		if isIPv4(cidr.IP) {
			dst = "0.0.0.0/0"
		}
		routes = append(routes, map[string]any{"dst": dst})
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    1500,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  routes,
					"ranges":  ranges,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}},
		},
	}
	raw, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(a.confDir, cniConfFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(raw) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	log.Printf("wrote %s for %v", path, cidrs)
	return nil
}

// ensureMasquerade SNATs pod traffic bound outside the pod range, once, with
// iptables or ip6tables after the range's family.
func ensureMasquerade(subnet *net.IPNet) error {
	tool := "ip6tables"
	if isIPv4(subnet.IP) {
		tool = "iptables"
	}
	spec := []string{"-s", subnet.String(), "!", "-d", subnet.String(),
		"-m", "comment", "--comment", "svcconf kindnet masquerade", "-j", "MASQUERADE"}
	if exec.Command(tool, append([]string{"-t", "nat", "-C", "POSTROUTING"}, spec...)...).Run() == nil {
		return nil
	}
	add := append([]string{"-t", "nat", "-A", "POSTROUTING"}, spec...)
	if out, err := exec.Command(tool, add...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", tool, strings.Join(add, " "), err, out)
	}
	return nil
}
