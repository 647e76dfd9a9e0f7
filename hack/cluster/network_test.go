package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestConflicts(t *testing.T) {
	pod, svc := netip.MustParsePrefix("10.244.0.0/24"), netip.MustParsePrefix("10.96.0.0/24")
	tests := []struct {
		name string
		host hostNetwork
		want []string
	}{
		{name: "this machine: an uplink in 192.0.2.0/24, a resolver in 10.0.0.0/8",
			host: hostNetwork{
				addrs:     []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("192.0.2.2/24")},
				routes:    []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("127.0.0.0/8")},
				resolvers: []netip.Addr{netip.MustParseAddr("10.255.255.53")},
			}},
		{name: "the resolver inside the pod range",
			host: hostNetwork{resolvers: []netip.Addr{netip.MustParseAddr("10.244.0.53")}},
			want: []string{"10.244.0.0/24 holds the host's DNS resolver 10.244.0.53"}},
		{name: "a broader route covering the service range",
			host: hostNetwork{routes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			want: []string{"10.244.0.0/24 overlaps the host route 10.0.0.0/8", "10.96.0.0/24 overlaps the host route 10.0.0.0/8"}},
		{name: "an address inside the service range",
			host: hostNetwork{addrs: []netip.Prefix{netip.MustParsePrefix("10.96.0.7/16")}},
			want: []string{"10.96.0.0/24 overlaps the host address 10.96.0.7/16"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.host.conflicts(pod, svc)
			if !slices.Equal(got, tt.want) {
				t.Errorf("conflicts:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := (hostNetwork{}).conflicts(pod, netip.MustParsePrefix("10.244.0.128/25")); len(got) != 1 {
		t.Errorf("overlapping pod and service ranges: got %q, want one conflict", got)
	}
}

func TestParseRoutes(t *testing.T) {
	out := `[{"type":"unicast","dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},` +
		`{"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},` +
		`{"type":"local","dst":"192.0.2.2","table":"local","dev":"eth0","protocol":"kernel","scope":"host","prefsrc":"192.0.2.2","flags":[]}]`
	got, err := parseRoutes([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[192.0.2.0/24 192.0.2.2/32]"; fmt.Sprint(got) != want {
		t.Errorf("parseRoutes: got %v, want %v", got, want)
	}
}

// TestGuard checks the egress guard for real, in network namespaces of its own: "host"
// holds the cluster's bridge and guard as up makes them, with a default route through a
// veth to "uplink", the network beyond the machine; "pod" is a pod on the bridge. Each
// packet that would reach uplink from or to a cluster range is sent first without the
// guard, where it must arrive (so the test can fail), then with it, where the guard
// must drop it; what the cluster needs (host to pod, pod to host) must still pass.
func TestGuard(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates network namespaces and iptables rules")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make cluster-up installs it): %v", tool, err)
		}
	}
	pod, svc := netip.MustParsePrefix("10.244.0.0/24"), netip.MustParsePrefix("10.96.0.0/24")
	gateway := pod.Addr().Next()
	suffix := strconv.Itoa(os.Getpid())
	host, uplink, podNS := "fgt-host-"+suffix, "fgt-up-"+suffix, "fgt-pod-"+suffix
	in := func(ns string) []string { return []string{"ip", "netns", "exec", ns} }
	must := func(prefix []string, args ...string) {
		t.Helper()
		if err := ipCmd(prefix, args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{host, uplink, podNS} {
		must(nil, "netns", "add", ns)
		t.Cleanup(func() {
			if err := ipCmd(nil, "netns", "del", ns); err != nil {
				t.Error(err)
			}
		})
		must(in(ns), "link", "set", "lo", "up")
	}
	// host <-> uplink: 198.51.100.0/30 (TEST-NET-2, inside these namespaces only).
	must(nil, "link", "add", "fgt-h0", "netns", host, "type", "veth", "peer", "name", "fgt-u0", "netns", uplink)
	must(in(host), "addr", "add", "198.51.100.1/30", "dev", "fgt-h0")
	must(in(host), "link", "set", "fgt-h0", "up")
	must(in(uplink), "addr", "add", "198.51.100.2/30", "dev", "fgt-u0")
	must(in(uplink), "link", "set", "fgt-u0", "up")
	must(in(host), "route", "add", "default", "via", "198.51.100.2")
	// Forwarding on, as on a host where it is: the guard, not its absence, must stop a pod.
	sysctl(t, host, "net/ipv4/ip_forward", "1")
	if err := addBridge(in(host), "fgbr0", gateway, pod, svc); err != nil {
		t.Fatal(err)
	}
	must(nil, "link", "add", "fgt-p0", "netns", host, "type", "veth", "peer", "name", "eth0", "netns", podNS)
	must(in(host), "link", "set", "fgt-p0", "master", "fgbr0", "up")
	must(in(podNS), "addr", "add", "10.244.0.5/24", "dev", "eth0")
	must(in(podNS), "link", "set", "eth0", "up")
	must(in(podNS), "route", "add", "default", "via", gateway.String())

	// Every test datagram goes to UDP port 9; each namespace counts those it receives.
	for _, ns := range []string{uplink, host, podNS} {
		if err := (iptables(in(ns))).run("-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "9"); err != nil {
			t.Fatal(err)
		}
	}
	received := func(ns string) int { return packets(t, in(ns), "raw", "PREROUTING") }
	send := func(from, to string) {
		t.Helper()
		// bash's /dev/udp: one datagram, no listener needed.
		out, err := exec.Command("ip", "netns", "exec", from, "bash", "-c", "echo x >/dev/udp/"+to+"/9").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "Network is unreachable") && !strings.Contains(string(out), "Operation not permitted") {
			t.Fatalf("sending from %s to %s: %v: %s", from, to, err, out)
		}
	}
	leaks := []struct {
		name     string
		from, to string
		breakIt  func()
		restore  func()
	}{
		{name: "host to a ClusterIP whose route to the bridge is gone", from: host, to: "10.96.0.10",
			breakIt: func() { must(in(host), "route", "del", svc.String()) },
			restore: func() { must(in(host), "route", "add", svc.String(), "dev", "fgbr0", "src", gateway.String()) }},
		{name: "host to a pod address while the bridge is down", from: host, to: "10.244.0.9",
			breakIt: func() { must(in(host), "link", "set", "fgbr0", "down") },
			restore: func() { must(in(host), "link", "set", "fgbr0", "up") }},
		{name: "a pod to an address beyond the uplink", from: podNS, to: "198.51.100.2",
			breakIt: func() {}, restore: func() {}},
	}
	guard := iptables(in(host))
	for _, tt := range leaks {
		t.Run(tt.name, func(t *testing.T) {
			tt.breakIt()
			defer tt.restore()
			before := received(uplink)
			send(tt.from, tt.to)
			waitFor(t, func() bool { return received(uplink) > before }, "the packet to reach the uplink without the guard")

			if err := guard.installGuard("fgbr0", pod, svc); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := guard.removeGuard(); err != nil {
					t.Error(err)
				}
			}()
			before, dropped := received(uplink), packets(t, in(host), "filter", guardChain)
			send(tt.from, tt.to)
			waitFor(t, func() bool { return packets(t, in(host), "filter", guardChain) > dropped }, "the guard to drop the packet")
			if got := received(uplink); got != before {
				t.Errorf("with the guard, %d packet(s) from %s to %s reached the uplink", got-before, tt.from, tt.to)
			}
		})
	}

	t.Run("the cluster's own traffic passes the guard", func(t *testing.T) {
		if err := guard.installGuard("fgbr0", pod, svc); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := guard.removeGuard(); err != nil {
				t.Error(err)
			}
		}()
		before := received(podNS)
		send(host, "10.244.0.5")
		waitFor(t, func() bool { return received(podNS) > before }, "host to pod")
		before = received(host)
		send(podNS, gateway.String())
		waitFor(t, func() bool { return received(host) > before }, "pod to the host's bridge address (the API server's)")
		before = received(host)
		send(host, gateway.String())
		waitFor(t, func() bool { return received(host) > before }, "host to its own bridge address")
	})

	if err := guard.removeGuard(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", host, "iptables-save").Output(); err != nil || strings.Contains(string(out), guardChain) {
		t.Errorf("after removeGuard, iptables-save (%v) still has %s:\n%s", err, guardChain, out)
	}
}

// packets sums the packet counters of chain's rules.
func packets(t *testing.T, prefix []string, table, chain string) int {
	t.Helper()
	args := append(append([]string{}, prefix...), "iptables", "-w", "5", "-t", table, "-L", chain, "-v", "-x", "-n")
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	total := 0
	for _, line := range strings.Split(string(out), "\n")[2:] {
		if fields := strings.Fields(line); len(fields) > 0 {
			n, err := strconv.Atoi(fields[0])
			if err == nil {
				total += n
			}
		}
	}
	return total
}

func sysctl(t *testing.T, ns, name, value string) {
	t.Helper()
	// /proc/sys/net is the namespace's own for a process inside it.
	if out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "echo "+value+" >/proc/sys/"+name).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", name, ns, err, out)
	}
}

// waitFor polls cond for a few seconds: packets cross veths asynchronously.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for range 100 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
