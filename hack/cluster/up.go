package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// cgroupRoot is the kubelet's cgroupRoot: every pod's cgroup is under it, so down finds
// (and removes) them all, whatever happened to the kubelet.
const cgroupRoot = "/friendgate-cluster"

// debianPackages are what the node needs from Debian, by the file each installs.
var debianPackages = map[string]string{
	"/usr/bin/containerd":   "containerd",
	"/usr/sbin/runc":        "runc",
	"/usr/sbin/iptables":    iptablesCmd,
	"/usr/sbin/conntrack":   "conntrack",
	"/usr/lib/cni/bridge":   "containernetworking-plugins",
	"/usr/lib/cni/loopback": "containernetworking-plugins",
	"/usr/sbin/nft":         "nftables",
}

// pathsOutside are paths the node's programs write to whatever their configuration says;
// up creates those that are missing so that down removes them again.
var pathsOutside = []string{
	"/run/containerd",     // containerd's shims' sockets (/run/containerd/s)
	"/var/lib/cni",        // libcni's result cache
	"/var/log/containers", // the kubelet's links to container logs
}

// The cluster's processes, by the names of their binaries and logs.
const (
	etcd              = "etcd"
	apiServer         = "kube-apiserver"
	controllerManager = "kube-controller-manager"
	scheduler         = "kube-scheduler"
	kubelet           = "kubelet"
	kubeProxy         = "kube-proxy"
	containerd        = "containerd"
)

// components are the binaries up needs from the assets directory.
var components = []string{etcd, apiServer, controllerManager, scheduler, kubelet, kubeProxy, "kubectl"}

func up(ctx context.Context, c *config) (err error) {
	began := time.Now()
	if err := preflight(c); err != nil {
		return err
	}
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		return err
	}
	s := &state{Sysctls: readSysctls(), Chains: map[string][]string{}, Tables: nftTables()}
	for _, cmd := range []string{iptablesCmd, "ip6tables"} {
		s.Chains[cmd] = chains(cmd)
	}
	if err := c.save(s); err != nil {
		return err
	}
	// From here on, whatever fails or interrupts up leaves nothing behind.
	defer func() {
		if err != nil {
			fmt.Fprintf(os.Stderr, "cluster: up failed (%v); tearing down\n", err)
			if derr := down(c); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	if err := prepareHost(c, s); err != nil {
		return err
	}
	logStep(began, "network: bridge %s %s, services %s routed to it, guard %s", c.bridge, c.podCIDR, c.serviceCIDR, guardChain)

	apiURL := "https://" + net.JoinHostPort(c.gateway().String(), "6443")
	p, err := newPKI(c.path("pki"), apiURL)
	if err != nil {
		return err
	}
	if err := p.issueAll(c); err != nil {
		return err
	}
	free, err := freePorts(5)
	if err != nil {
		return err
	}
	ports := localPorts{etcdClient: free[0], etcdPeer: free[1], proxyHealth: free[2], proxyMetrics: free[3], kubeletHealth: free[4]}
	if err := c.writeConfigs(ports); err != nil {
		return err
	}
	r := &runner{c: c, s: s, began: began}
	if err := r.controlPlane(ctx, p, ports); err != nil {
		return err
	}
	if err := r.node(ctx, p, ports); err != nil {
		return err
	}
	logStep(began, "cluster up")
	fmt.Printf("export KUBECONFIG=%s\n", c.kubeconfig())
	return nil
}

// preflight checks what up needs and installs the missing Debian packages.
func preflight(c *config) error {
	if os.Geteuid() != 0 {
		return errors.New("up must run as root: it creates a bridge, iptables rules, cgroups and mounts")
	}
	if c.assets == "" {
		return errors.New("no --assets (or $CLUSTER_ASSETS): make cluster-assets prints the directory")
	}
	for _, name := range components {
		if _, err := os.Stat(filepath.Join(c.assets, name)); err != nil {
			return fmt.Errorf("%w (make cluster-assets builds it)", err)
		}
	}
	if _, err := os.Stat(c.statePath()); err == nil {
		return fmt.Errorf("%s exists: a cluster is up, or one was not torn down; run `cluster down` first", c.statePath())
	}
	if err := installPackages(); err != nil {
		return err
	}
	host, err := readHostNetwork()
	if err != nil {
		return err
	}
	if found := host.conflicts(c.podCIDR, c.serviceCIDR); len(found) > 0 {
		return fmt.Errorf("refusing to start, the cluster's ranges collide with this host's network: %s; choose other --pod-cidr/--service-cidr",
			strings.Join(found, "; "))
	}
	if _, err := net.InterfaceByName(c.bridge); err == nil {
		return fmt.Errorf("an interface %s already exists", c.bridge)
	}
	return nil
}

// prepareHost creates the paths, the bridge, the guard and the cgroups, each recorded in
// the state before it is made, so that down removes even a half-made one.
func prepareHost(c *config, s *state) error {
	for _, p := range pathsOutside {
		if err := s.createPath(p); err != nil {
			return err
		}
	}
	s.Bridge, s.Guard, s.CgroupRoot = c.bridge, true, cgroupRoot
	if err := c.save(s); err != nil {
		return err
	}
	if err := addBridge(nil, c.bridge, c.gateway(), c.podCIDR, c.serviceCIDR); err != nil {
		return err
	}
	if err := (iptables{}).installGuard(c.bridge, c.podCIDR, c.serviceCIDR); err != nil {
		return err
	}
	return createCgroups(cgroupRoot)
}

// controlPlane starts etcd and the API server.
func (r *runner) controlPlane(ctx context.Context, p *pki, ports localPorts) error {
	c := r.c
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports.etcdClient)
	if err := r.start(etcd, etcd,
		"--name=friendgate", "--data-dir="+c.path("etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports.etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports.etcdPeer),
		fmt.Sprintf("--initial-cluster=friendgate=http://127.0.0.1:%d", ports.etcdPeer),
		"--unsafe-no-fsync"); err != nil {
		return err
	}
	if err := r.waitHTTP(ctx, etcd, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return err
	}
	logStep(r.began, "etcd ready")

	if err := r.start(apiServer, apiServer,
		"--etcd-servers="+etcdURL,
		"--bind-address="+c.gateway().String(), "--secure-port=6443", "--advertise-address="+c.gateway().String(),
		"--service-cluster-ip-range="+c.serviceCIDR.String(),
		"--tls-cert-file="+p.path("apiserver.crt"), "--tls-private-key-file="+p.path("apiserver.key"),
		"--client-ca-file="+p.path("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p.path("sa.pub"), "--service-account-signing-key-file="+p.path("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--kubelet-client-certificate="+p.path("admin.crt"), "--kubelet-client-key="+p.path("admin.key"),
		// The node's name does not resolve here; its InternalIP is the bridge's.
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false"); err != nil {
		return err
	}
	tlsCfg, err := clientTLS(p)
	if err != nil {
		return err
	}
	if err := r.waitHTTP(ctx, apiServer, p.server+"/readyz", tlsCfg, 2*time.Minute); err != nil {
		return err
	}
	logStep(r.began, "kube-apiserver ready at %s", p.server)
	return nil
}

// node starts containerd (and imports the images), the controller-manager, the
// scheduler, the kubelet and kube-proxy, and waits until pods can run.
func (r *runner) node(ctx context.Context, p *pki, ports localPorts) error {
	c := r.c
	if err := r.start(containerd, "/usr/bin/containerd", "--config="+c.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := r.wait(ctx, containerd, 30*time.Second, func() error {
		return exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "version").Run()
	}); err != nil {
		return err
	}
	if len(c.images) > 0 {
		if err := load(ctx, c, c.images); err != nil {
			return err
		}
	}
	logStep(r.began, "containerd ready, %d image archive(s) imported", len(c.images))

	starts := [][]string{
		{controllerManager,
			"--kubeconfig=" + p.path("controller-manager.kubeconfig"),
			"--secure-port=0", "--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + p.path("sa.key"),
			"--root-ca-file=" + p.path("ca.crt"),
			"--cluster-signing-cert-file=" + p.path("ca.crt"), "--cluster-signing-key-file=" + p.path("ca.key")},
		{scheduler, "--kubeconfig=" + p.path("scheduler.kubeconfig"), "--secure-port=0", "--leader-elect=false"},
		{kubelet,
			"--config=" + c.path("kubelet", "config.yaml"),
			"--kubeconfig=" + p.path("kubelet.kubeconfig"),
			"--root-dir=" + c.path("kubelet"),
			"--hostname-override=" + c.node,
			"--node-ip=" + c.gateway().String()},
		{kubeProxy, "--config=" + c.path("kube-proxy.yaml")},
	}
	for _, args := range starts {
		if err := r.start(args[0], args[0], args[1:]...); err != nil {
			return err
		}
	}

	client, err := c.client()
	if err != nil {
		return err
	}
	if err := r.wait(ctx, "the node", 2*time.Minute, func() error { return nodeReady(ctx, client, c.node) }); err != nil {
		return err
	}
	logStep(r.began, "node %s Ready", c.node)
	if err := r.waitHTTP(ctx, kubeProxy, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports.proxyHealth), nil, time.Minute); err != nil {
		return err
	}
	return r.wait(ctx, "the default ServiceAccount", time.Minute, func() error {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func logStep(began time.Time, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: [%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

// installPackages installs the Debian packages of debianPackages that are missing.
func installPackages() error {
	var missing []string
	for file, pkg := range debianPackages {
		if _, err := os.Stat(file); err != nil && !slices.Contains(missing, pkg) {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "cluster: installing %s from Debian\n", strings.Join(missing, " "))
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// cgroupHierarchies are the mounted cgroup v1 hierarchies.
func cgroupHierarchies() ([]string, error) {
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		dir := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); e.IsDir() && err == nil {
			dirs = append(dirs, dir)
		}
	}
	return dirs, nil
}

// createCgroups creates the kubelet's cgroupRoot in every hierarchy: the kubelet
// requires it to exist.
func createCgroups(root string) error {
	dirs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(d, root), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

// localPorts are the loopback ports of the components that listen on one.
type localPorts struct {
	etcdClient, etcdPeer, proxyHealth, proxyMetrics, kubeletHealth int
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func clientTLS(p *pki) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.path("admin.crt"), p.path("admin.key"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots}, nil
}

func (c *config) client() (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig())
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

func nodeReady(ctx context.Context, client *kubernetes.Clientset, name string) error {
	node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s", name, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", name)
}

// runner starts the cluster's processes and waits for them.
type runner struct {
	c     *config
	s     *state
	began time.Time
}

// start runs bin (from the assets directory unless a path) in a session of its own, so
// that it outlives up, logging to logs/NAME.log, and records its PID before anything else.
func (r *runner) start(name, bin string, args ...string) error {
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(r.c.assets, bin)
	}
	log, err := os.OpenFile(r.c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = r.c.dir
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	st, err := startTime(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("%s exited at once: %w", name, err)
	}
	r.s.Processes = append(r.s.Processes, process{Name: name, PID: cmd.Process.Pid, Start: st})
	if err := r.c.save(r.s); err != nil {
		return err
	}
	// Reap it if it exits while up still runs, so that alive() sees it gone.
	go func() { _ = cmd.Wait() }()
	return nil
}

// wait polls check until it succeeds, failing early when a started process has exited.
func (r *runner) wait(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		for _, p := range r.s.Processes {
			if !p.alive() {
				return fmt.Errorf("%s exited while waiting for %s; its log:\n%s", p.Name, what, r.tail(p.Name))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (r *runner) waitHTTP(ctx context.Context, what, url string, tlsCfg *tls.Config, timeout time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	return r.wait(ctx, what, timeout, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// tail is the end of a component's log, for errors.
func (r *runner) tail(name string) string {
	b, _ := os.ReadFile(r.c.path("logs", name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func (c *config) containerdSocket() string { return c.path("containerd", "containerd.sock") }

// writeConfigs writes containerd's, the CNI's, the kubelet's and kube-proxy's
// configuration files.
func (c *config) writeConfigs(ports localPorts) error {
	data := map[string]string{
		"Dir":           c.dir,
		"Pause":         c.pauseImage,
		"Bridge":        c.bridge,
		"PodCIDR":       c.podCIDR.String(),
		"Gateway":       c.gateway().String(),
		"CgroupRoot":    cgroupRoot,
		"CA":            c.path("pki", "ca.crt"),
		"Socket":        c.containerdSocket(),
		"ProxyConfig":   c.path("pki", "kube-proxy.kubeconfig"),
		"Node":          c.node,
		"KubeletHealth": strconv.Itoa(ports.kubeletHealth),
		"ProxyHealth":   strconv.Itoa(ports.proxyHealth),
		"ProxyMetrics":  strconv.Itoa(ports.proxyMetrics),
	}
	files := map[string]string{
		c.path("containerd", "config.toml"):              containerdConfig,
		c.path("cni", "net.d", "10-friendgate.conflist"): cniConfig,
		c.path("kubelet", "config.yaml"):                 kubeletConfig,
		c.path("kube-proxy.yaml"):                        kubeProxyConfig,
	}
	for path, text := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		var b strings.Builder
		if err := template.Must(template.New(path).Parse(text)).Execute(&b, data); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// containerd: state, sockets and network namespaces under the cluster's directory;
// restrict_oom_score_adj because this sandbox lacks CAP_SYS_RESOURCE (runc fails every
// pod otherwise); cgroupfs, as the kubelet on this cgroup v1 host.
const containerdConfig = `version = 2
root = "{{.Dir}}/containerd/root"
state = "{{.Dir}}/containerd/state"

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.Pause}}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{{.Dir}}/cni/net.d"
    max_conf_num = 1
`

// The CNI bridge attaches pods to the bridge up created. isGateway and ipMasq stay off:
// the bridge already has the gateway address, and the bridge plugin would otherwise turn
// on IP forwarding and masquerade pod traffic towards the uplink. Pods get a default
// route to the gateway, where kube-proxy's rules take ClusterIPs; nothing is forwarded.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "friendgate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "{{.Bridge}}",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "{{.PodCIDR}}", "gateway": "{{.Gateway}}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "{{.Dir}}/cni/ipam"
      }
    }
  ]
}
`

// The kubelet: cgroup v1 with cgroupfs (failCgroupV1: false), every pod under
// cgroupRoot, listening on the bridge's address only, no host DNS handed to pods
// (resolvConf ""), and image garbage collection off, since the images are imported and
// cannot be pulled again.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {{.CgroupRoot}}
containerRuntimeEndpoint: unix://{{.Socket}}
address: {{.Gateway}}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {{.KubeletHealth}}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {{.CA}}
authorization:
  mode: AlwaysAllow
resolvConf: ""
podLogsDir: {{.Dir}}/pod-logs
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
`

// kube-proxy in iptables mode: NodePorts only on the bridge's address (so it does not
// turn on route_localnet), conntrack settings left as they are (0).
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {{.ProxyConfig}}
mode: iptables
hostnameOverride: {{.Node}}
healthzBindAddress: 127.0.0.1:{{.ProxyHealth}}
metricsBindAddress: 127.0.0.1:{{.ProxyMetrics}}
clusterCIDR: {{.PodCIDR}}
nodePortAddresses: ["{{.Gateway}}/32"]
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`
