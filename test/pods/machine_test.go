package pods

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// machine is what the cluster could leave behind on this machine, read so that two
// readings compare equal when nothing was left.
type machine struct {
	processes []string          // processes of the cluster's programs
	links     []string          // network interfaces
	routes    []string          // IPv4 and IPv6 routes of every table
	mounts    []string          // mount points
	rules     []string          // iptables and ip6tables rules, user chains, non-ACCEPT policies; nftables tables
	cgroups   []string          // the kubelet's cgroupRoot in any hierarchy
	paths     []string          // paths the node programs write to outside the cluster's directory
	sysctls   map[string]string // kernel settings the kubelet and kube-proxy may change
}

// clusterPrograms are the executables the cluster runs, outside the assets directory.
var clusterPrograms = []string{"/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc"}

var kernelSettings = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

func readMachine() (machine, error) {
	var m machine
	var err error
	if m.processes, err = clusterProcesses(); err != nil {
		return m, err
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return m, fmt.Errorf("ip link: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
			m.links = append(m.links, name)
		}
	}
	expires := regexp.MustCompile(`\s+expires\s+\S+`)
	for _, family := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", family, "route", "show", "table", "all").Output()
		if err != nil {
			return m, fmt.Errorf("ip route: %w", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			m.routes = append(m.routes, expires.ReplaceAllString(line, ""))
		}
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(mountinfo)), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 {
			m.mounts = append(m.mounts, fields[4])
		}
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(cmd).Output()
		if err != nil {
			return m, fmt.Errorf("%s: %w", cmd, err)
		}
		table := ""
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			switch {
			case strings.HasPrefix(line, "*"):
				table = line
			case strings.HasPrefix(line, "-A"):
				m.rules = append(m.rules, cmd+" "+table+" "+line)
			// A user chain, or a built-in one whose policy is not ACCEPT. (Empty
			// built-in chains of a table the cluster's programs made are no rule.)
			case strings.HasPrefix(line, ":") && len(fields) > 1 && (fields[1] == "-" || fields[1] != "ACCEPT"):
				m.rules = append(m.rules, cmd+" "+table+" "+fields[0]+" "+fields[1])
			}
		}
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			m.rules = append(m.rules, "nft "+line)
		}
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*/friendgate-cluster")
	m.cgroups = hierarchies
	for _, p := range []string{"/run/containerd", "/var/lib/cni", "/var/log/containers", env.clusterDir} {
		if _, err := os.Stat(p); err == nil {
			m.paths = append(m.paths, p)
		}
	}
	m.sysctls = map[string]string{}
	for _, name := range kernelSettings {
		if b, err := os.ReadFile("/proc/sys/" + name); err == nil {
			m.sysctls[name] = strings.TrimSpace(string(b))
		}
	}
	return m, nil
}

// clusterProcesses lists the running processes of the cluster: those of its programs
// (an executable of the assets directory, which envtest tests share, or one of
// clusterPrograms) whose command line names the cluster's directory, and those in the
// cgroups of its pods.
func clusterProcesses() ([]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var found []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if exe == "" && len(cmdline) == 0 {
			continue // exited, or a kernel thread
		}
		cgroup, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		program := strings.HasPrefix(exe, env.assets+"/") || slices.Contains(clusterPrograms, exe)
		if program && strings.Contains(string(cmdline), env.clusterDir) || strings.Contains(string(cgroup), ":/friendgate-cluster") {
			found = append(found, fmt.Sprintf("PID %s %s", e.Name(), strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return found, nil
}

// leftovers lists what after has that m had not (and what it lost), and the kernel
// settings that differ.
func (m machine) leftovers(after machine) []string {
	var found []string
	added := func(what string, before, now []string) {
		for _, x := range now {
			if !slices.Contains(before, x) {
				found = append(found, what+": "+x)
			}
		}
	}
	added("process", m.processes, after.processes)
	added("interface", m.links, after.links)
	added("route", m.routes, after.routes)
	added("mount", m.mounts, after.mounts)
	added("iptables", m.rules, after.rules)
	added("cgroup", m.cgroups, after.cgroups)
	added("path", m.paths, after.paths)
	// Nor may tearing down take away what was there.
	added("gone: interface", after.links, m.links)
	added("gone: route", after.routes, m.routes)
	added("gone: mount", after.mounts, m.mounts)
	added("gone: iptables", after.rules, m.rules)
	added("gone: path", after.paths, m.paths)
	for name, v := range m.sysctls {
		if after.sysctls[name] != v {
			found = append(found, fmt.Sprintf("sysctl %s: %s, was %s", name, after.sysctls[name], v))
		}
	}
	return found
}
