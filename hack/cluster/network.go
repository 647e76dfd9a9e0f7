package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// guardChain holds the egress guard; OUTPUT and FORWARD jump to it first.
const guardChain = "FRIENDGATE-GUARD"

const iptablesCmd = "iptables"

// hostNetwork is what the host already uses: its addresses, its routes other than
// default routes, and its DNS resolvers.
type hostNetwork struct {
	addrs     []netip.Prefix
	routes    []netip.Prefix
	resolvers []netip.Addr
}

// conflicts names everything of h that overlaps one of ranges. A cluster range that
// overlapped a route or an address would capture the host's own traffic (the host's
// resolver sits in 10.0.0.0/8 here), and one that overlapped a resolver would have the
// guard drop name resolution for the whole machine.
func (h hostNetwork) conflicts(ranges ...netip.Prefix) []string {
	var found []string
	for _, r := range ranges {
		for _, a := range h.addrs {
			if r.Overlaps(a) {
				found = append(found, fmt.Sprintf("%s overlaps the host address %s", r, a))
			}
		}
		for _, rt := range h.routes {
			if r.Overlaps(rt) {
				found = append(found, fmt.Sprintf("%s overlaps the host route %s", r, rt))
			}
		}
		for _, ns := range h.resolvers {
			if r.Contains(ns) {
				found = append(found, fmt.Sprintf("%s holds the host's DNS resolver %s", r, ns))
			}
		}
	}
	for i, a := range ranges {
		for _, b := range ranges[i+1:] {
			if a.Overlaps(b) {
				found = append(found, fmt.Sprintf("%s overlaps %s", a, b))
			}
		}
	}
	return found
}

// readHostNetwork reads the host's IPv4 addresses, its routes in every table and the
// resolvers of /etc/resolv.conf.
func readHostNetwork() (hostNetwork, error) {
	var h hostNetwork
	ifaces, err := net.Interfaces()
	if err != nil {
		return h, err
	}
	for _, iface := range ifaces {
		addrs, err := iface.Addrs()
		if err != nil {
			return h, err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				h.addrs = append(h.addrs, p)
			}
		}
	}
	out, err := exec.Command("ip", "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return h, fmt.Errorf("ip route: %w", err)
	}
	if h.routes, err = parseRoutes(out); err != nil {
		return h, err
	}
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return h, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				h.resolvers = append(h.resolvers, a)
			}
		}
	}
	return h, s.Err()
}

// parseRoutes reads `ip -j route` output; default routes are left out, since every
// range overlaps them.
func parseRoutes(out []byte) ([]netip.Prefix, error) {
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("ip route: %w", err)
	}
	var prefixes []netip.Prefix
	for _, r := range routes {
		if r.Dst == "default" || r.Dst == "" {
			continue
		}
		if !strings.Contains(r.Dst, "/") {
			r.Dst += "/32"
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			return nil, fmt.Errorf("ip route: %w", err)
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

// guardRules are the guard chain's rules: traffic to the bridge and over loopback goes
// on, anything else from or to a cluster range is dropped before it can reach an uplink.
// The API server's and the kubelet's address is the bridge's, inside the pod range, so
// the host's own calls to them (over lo) are let through first.
func guardRules(bridge string, ranges ...netip.Prefix) [][]string {
	rules := [][]string{
		{"-o", bridge, "-j", "RETURN"},
		{"-o", "lo", "-j", "RETURN"},
	}
	for _, r := range ranges {
		rules = append(rules,
			[]string{"-s", r.String(), "-j", "DROP"},
			[]string{"-d", r.String(), "-j", "DROP"})
	}
	return rules
}

// iptables runs iptables, prefixed (ip netns exec NAME, in tests).
type iptables []string

func (ipt iptables) run(args ...string) error {
	cmd := append(append([]string{}, ipt...), append([]string{iptablesCmd, "-w", "5"}, args...)...)
	out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// installGuard creates the guard chain and puts it first in OUTPUT and FORWARD.
func (ipt iptables) installGuard(bridge string, ranges ...netip.Prefix) error {
	if err := ipt.run("-N", guardChain); err != nil {
		return err
	}
	for _, rule := range guardRules(bridge, ranges...) {
		if err := ipt.run(append([]string{"-A", guardChain}, rule...)...); err != nil {
			return err
		}
	}
	for _, chain := range []string{"OUTPUT", "FORWARD"} {
		if err := ipt.run("-I", chain, "1", "-j", guardChain); err != nil {
			return err
		}
	}
	return nil
}

// removeGuard undoes installGuard; a guard that is not there is no error.
func (ipt iptables) removeGuard() error {
	if ipt.run("-L", guardChain, "-n") != nil {
		return nil
	}
	for _, chain := range []string{"OUTPUT", "FORWARD"} {
		for ipt.run("-C", chain, "-j", guardChain) == nil {
			if err := ipt.run("-D", chain, "-j", guardChain); err != nil {
				return err
			}
		}
	}
	if err := ipt.run("-F", guardChain); err != nil {
		return err
	}
	return ipt.run("-X", guardChain)
}

// ipCmd runs ip, prefixed like iptables.
func ipCmd(prefix []string, args ...string) error {
	cmd := append(append([]string{}, prefix...), append([]string{"ip"}, args...)...)
	out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addBridge creates the bridge with the gateway address of the pod range and routes the
// service range to it too: a ClusterIP that kube-proxy has not (or no longer) rewritten
// then goes nowhere but this portless bridge, never the default route.
func addBridge(prefix []string, bridge string, gateway netip.Addr, pod, service netip.Prefix) error {
	const add = "add"
	steps := [][]string{
		{"link", add, bridge, "type", "bridge"},
		{"addr", add, netip.PrefixFrom(gateway, pod.Bits()).String(), "dev", bridge},
		{"link", "set", bridge, "up"},
		{"route", add, service.String(), "dev", bridge, "src", gateway.String()},
	}
	for _, s := range steps {
		if err := ipCmd(prefix, s...); err != nil {
			return err
		}
	}
	return nil
}
