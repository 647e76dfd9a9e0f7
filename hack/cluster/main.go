// Command cluster brings up, and tears down, a single-node Kubernetes cluster on this
// machine, without Docker: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// a kubelet on containerd and runc, and kube-proxy in iptables mode, with a CNI bridge.
// The Kubernetes binaries are the ones hack/envtest-assets.sh builds from the Go module
// proxy (make cluster-assets); containerd, runc, iptables, conntrack and the CNI plugins
// are Debian's, installed when missing.
//
// Everything the cluster uses stays inside this machine: the pod and service ranges are
// routed only to a bridge this command creates, an iptables guard drops any packet from
// or to them that would leave through another interface, and only the API server and the
// kubelet listen on a non-loopback address, the bridge's own. `down` stops every process
// by PID, unmounts, removes the cgroups, interfaces, routes and iptables rules it added
// and puts back the kernel settings the kubelet changes (docs/cluster.md).
//
//	cluster up      start the cluster; prints the KUBECONFIG to use
//	cluster load    import image archives (docker save format) into containerd
//	cluster down    stop it and leave the machine as it was
//	cluster env     print the KUBECONFIG line of a running cluster
//	cluster packages  install the Debian packages the node needs that are missing (up does
//	                too; the pods scenario runs it first, to record the machine's state with
//	                the tools installed)
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// config is where the cluster lives and which addresses it takes.
type config struct {
	dir         string
	assets      string
	podCIDR     netip.Prefix
	serviceCIDR netip.Prefix
	bridge      string
	node        string
	pauseImage  string
	images      []string
}

// gateway is the bridge's address: the pods' gateway, the node's InternalIP and the
// address the API server and the kubelet listen on.
func (c *config) gateway() netip.Addr { return c.podCIDR.Addr().Next() }

// apiServiceIP is the ClusterIP of the kubernetes Service.
func (c *config) apiServiceIP() netip.Addr { return c.serviceCIDR.Addr().Next() }

func (c *config) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

func (c *config) kubeconfig() string { return c.path("pki", "admin.kubeconfig") }

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var cfg config
	var pod, svc, images string
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	fs.StringVar(&cfg.dir, "dir", "/var/lib/friendgate-cluster", "directory of the cluster's state, logs, certificates and containerd's images")
	fs.StringVar(&cfg.assets, "assets", os.Getenv("CLUSTER_ASSETS"), "directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl (make cluster-assets); default $CLUSTER_ASSETS")
	fs.StringVar(&pod, "pod-cidr", "10.244.0.0/24", "pod range, routed only to --bridge; must overlap no address, route or resolver of this host")
	fs.StringVar(&svc, "service-cidr", "10.96.0.0/24", "Service ClusterIP range, routed only to --bridge; must overlap no address, route or resolver of this host")
	fs.StringVar(&cfg.bridge, "bridge", "fgbr0", "name of the bridge the pods attach to")
	fs.StringVar(&cfg.node, "node", "friendgate-node", "node name")
	fs.StringVar(&cfg.pauseImage, "pause-image", pauseImage, "sandbox image, imported with load before pods start (hack/image pause)")
	fs.StringVar(&images, "load", "", "up: image archives to import as soon as containerd runs, comma-separated (the pause image among them)")
	_ = fs.Parse(os.Args[2:])
	if images != "" {
		cfg.images = strings.Split(images, ",")
	}

	var err error
	if cfg.podCIDR, err = parseRange(pod); err == nil {
		cfg.serviceCIDR, err = parseRange(svc)
	}
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch os.Args[1] {
	case "up":
		err = up(ctx, &cfg)
	case "down":
		err = down(&cfg)
	case "load":
		err = load(ctx, &cfg, fs.Args())
	case "packages":
		err = installPackages()
	case "env":
		if _, statErr := os.Stat(cfg.kubeconfig()); statErr != nil {
			err = fmt.Errorf("no cluster in %s: %w", cfg.dir, statErr)
		} else {
			fmt.Printf("export KUBECONFIG=%s\n", cfg.kubeconfig())
		}
	default:
		usage()
	}
	if err != nil {
		fatal(err)
	}
}

// pauseImage is the sandbox image hack/image builds from the kubelet release's pause.c.
const pauseImage = "friendgate.local/pause:3.10.2"

func parseRange(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, err
	case !p.Addr().Is4() || p != p.Masked():
		return p, fmt.Errorf("%s: want an IPv4 network address with its prefix length", s)
	case p.Bits() > 28:
		return p, fmt.Errorf("%s: want a /28 or larger", s)
	}
	return p, nil
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cluster up|down|load|env|packages [flags] (cluster up -h lists the flags)")
	os.Exit(2)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}
