package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// state is what `up` changed on the machine, saved after each change so that `down`
// undoes exactly that, even after an `up` that failed or was killed half-way.
type state struct {
	Processes []process `json:"processes"`
	// Sysctls holds the values the kubelet and kube-proxy may change, as they were.
	Sysctls map[string]string `json:"sysctls"`
	// Bridge and Guard say whether the bridge and the iptables guard were added.
	Bridge string `json:"bridge,omitempty"`
	Guard  bool   `json:"guard,omitempty"`
	// CgroupRoot is the kubelet's cgroupRoot, created in every v1 hierarchy.
	CgroupRoot string `json:"cgroupRoot,omitempty"`
	// Created lists paths outside the state directory that did not exist before.
	Created []string `json:"created,omitempty"`
	// Chains lists the iptables and ip6tables chains there were before.
	Chains map[string][]string `json:"chains,omitempty"`
	// Tables lists the nftables tables there were before: iptables-nft creates the
	// tables it is first asked about, and leaves them when their rules are gone.
	Tables []string `json:"tables,omitempty"`
}

// process is one started process; its start time tells it from a later process that
// reuses the PID.
type process struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func (c *config) statePath() string { return c.path("state.json") }

func (c *config) save(s *state) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath())
}

func (c *config) load() (*state, error) {
	data, err := os.ReadFile(c.statePath())
	if err != nil {
		return nil, err
	}
	var s state
	return &s, json.Unmarshal(data, &s)
}

// kernelSettings are the sysctls the kubelet sets at start (its kernel tunables) and that
// kube-proxy could set; up records them and down puts them back.
var kernelSettings = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

func readSysctls() map[string]string {
	values := map[string]string{}
	for _, name := range kernelSettings {
		if b, err := os.ReadFile("/proc/sys/" + name); err == nil {
			values[name] = strings.TrimSpace(string(b))
		}
	}
	return values
}

func restoreSysctls(values map[string]string) error {
	var errs []error
	for name, want := range values {
		b, err := os.ReadFile("/proc/sys/" + name)
		if err == nil && strings.TrimSpace(string(b)) == want {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+name, []byte(want), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// startTime is field 22 of /proc/PID/stat, the process's start in clock ticks after boot.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; count from the closing parenthesis.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// alive says whether p still runs (a zombie does not).
func (p process) alive() bool {
	st, err := startTime(p.PID)
	if err != nil || st != p.Start {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// stop sends SIGTERM to p, and SIGKILL if it has not exited after grace.
func (p process) stop(grace time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for p.alive() {
		if time.Now().After(deadline) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; p.alive(); i++ {
		if i == 100 {
			return fmt.Errorf("%s (PID %d) still runs after SIGKILL", p.Name, p.PID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// processesUsing lists the running processes whose command line holds needle.
func processesUsing(needle string) []process {
	var found []process
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), needle) {
			continue
		}
		st, err := startTime(pid)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(string(cmdline), "\x00")
		found = append(found, process{Name: filepath.Base(name), PID: pid, Start: st})
	}
	return found
}

// createPath makes dir (and its parents) and records the topmost one that did not exist,
// for down to remove.
func (s *state) createPath(dir string) error {
	top := ""
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			top = d
		} else {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if top != "" {
		s.Created = append(s.Created, top)
	}
	return nil
}
