package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// down undoes what up recorded in the state file, in reverse: processes (the node's, the
// pods', the shims', the control plane's), mounts, cgroups, conntrack entries, iptables
// rules, the bridge and its routes, the kernel settings, the paths it created, and last
// the state directory. It goes on past errors and reports them all; with no state file
// there is nothing to do.
func down(c *config) error {
	s, err := c.load()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c.statePath(), err)
	}
	began := time.Now()
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	byName := map[string]process{}
	for _, p := range s.Processes {
		byName[p.Name] = p
	}
	// The node first, so that nothing restarts the pods; then the pods themselves.
	for _, name := range []string{kubelet, kubeProxy, scheduler, controllerManager} {
		if p, ok := byName[name]; ok {
			fail(p.stop(10 * time.Second))
		}
	}
	if s.CgroupRoot != "" {
		fail(killCgroup(s.CgroupRoot))
	}
	if p, ok := byName[containerd]; ok {
		fail(p.stop(10 * time.Second))
	}
	// The shims: their command line names containerd's socket.
	for _, p := range processesUsing(c.containerdSocket()) {
		fail(p.stop(5 * time.Second))
	}
	for _, name := range []string{apiServer, etcd} {
		if p, ok := byName[name]; ok {
			fail(p.stop(10 * time.Second))
		}
	}
	fail(unmountUnder(c.dir))
	if s.CgroupRoot != "" {
		fail(removeCgroup(s.CgroupRoot))
	}
	if _, ok := byName[kubeProxy]; ok && c.assets != "" {
		// kube-proxy's own cleanup of its rules; removeChains below catches the rest.
		if out, err := exec.Command(filepath.Join(c.assets, kubeProxy), "--cleanup").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: kube-proxy --cleanup: %v\n%s", err, out)
		}
	}
	for cmd, before := range s.Chains {
		fail(removeChains(cmd, before))
	}
	if s.Guard {
		fail(iptables{}.removeGuard())
	}
	fail(removeEmptyTables(s.Tables))
	for _, r := range []string{c.podCIDR.String(), c.serviceCIDR.String()} {
		for _, dir := range []string{"-s", "-d"} {
			// Exit status 1 means no entry matched.
			_ = exec.Command("conntrack", "-D", dir, r).Run()
		}
	}
	if s.Bridge != "" {
		if _, err := os.Stat("/sys/class/net/" + s.Bridge); err == nil {
			fail(ipCmd(nil, "link", "del", s.Bridge))
		}
	}
	fail(restoreSysctls(s.Sysctls))
	for _, p := range slices.Backward(s.Created) {
		fail(os.RemoveAll(p))
	}
	if len(errs) > 0 {
		// Keep the state file: a second down retries what failed.
		return fmt.Errorf("down left things behind: %w", errors.Join(errs...))
	}
	fail(os.RemoveAll(c.dir))
	logStep(began, "cluster down")
	return errors.Join(errs...)
}

// cgroupDirs lists root and every cgroup below it in every hierarchy, deepest first.
func cgroupDirs(root string) ([]string, error) {
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range hierarchies {
		top := filepath.Join(h, root)
		err := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs, nil
}

// killCgroup kills every process in the cgroups under root: the pods' containers, which
// the kubelet started (through containerd and runc) for this cluster.
func killCgroup(root string) error {
	for range 50 {
		dirs, err := cgroupDirs(root)
		if err != nil {
			return err
		}
		var pids []int
		for _, d := range dirs {
			pids = append(pids, readPIDs(filepath.Join(d, "cgroup.procs"))...)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("processes still run in cgroup %s", root)
}

func readPIDs(file string) []int {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var pids []int
	s := bufio.NewScanner(f)
	for s.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(s.Text())); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroup removes the cgroups under root, deepest first.
func removeCgroup(root string) error {
	dirs, err := cgroupDirs(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		// mountinfo escapes spaces and the like as octal; the state directory has none.
		if mp := fields[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return mounts, s.Err()
}

// unmountUnder unmounts everything below dir: the kubelet's volumes, containerd's
// rootfs and shm mounts, the pods' network namespaces.
func unmountUnder(dir string) error {
	for range 10 {
		mounts, err := mountsUnder(dir)
		if err != nil || len(mounts) == 0 {
			return err
		}
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	mounts, err := mountsUnder(dir)
	if err == nil && len(mounts) > 0 {
		err = fmt.Errorf("still mounted: %s", strings.Join(mounts, " "))
	}
	return err
}

// chains lists the chains of every table of cmd (iptables or ip6tables), as TABLE/CHAIN.
func chains(cmd string) []string {
	out, err := exec.Command(cmd + "-save").Output()
	if err != nil {
		return nil
	}
	var list []string
	table := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			list = append(list, table+"/"+strings.Fields(line[1:])[0])
		}
	}
	return list
}

// removeChains deletes the KUBE-* chains of cmd that were not there before, and the
// rules of other chains that jump to them: those the kubelet (its iptables canaries) and
// kube-proxy add, and kube-proxy --cleanup may leave.
func removeChains(cmd string, before []string) error {
	var errs []error
	added := map[string]bool{}
	tables := map[string][]string{}
	for _, tc := range chains(cmd) {
		table, chain, _ := strings.Cut(tc, "/")
		tables[table] = append(tables[table], chain)
		if strings.HasPrefix(chain, "KUBE-") && !slices.Contains(before, tc) {
			added[tc] = true
		}
	}
	if len(added) == 0 {
		return nil
	}
	for table, list := range tables {
		for _, chain := range list {
			if added[table+"/"+chain] {
				continue // flushed below
			}
			out, err := exec.Command(cmd, "-w", "5", "-t", table, "-S", chain).Output()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s -S %s: %w", cmd, table, chain, err))
				continue
			}
			// Rule numbers of the rules jumping to an added chain, deleted last first.
			var jumps []int
			n := 0
			for _, line := range strings.Split(string(out), "\n") {
				fields := strings.Fields(line)
				if len(fields) == 0 || fields[0] != "-A" {
					continue
				}
				n++
				for i, f := range fields {
					if (f == "-j" || f == "-g") && i+1 < len(fields) && added[table+"/"+fields[i+1]] {
						jumps = append(jumps, n)
					}
				}
			}
			for _, num := range slices.Backward(jumps) {
				if out, err := exec.Command(cmd, "-w", "5", "-t", table, "-D", chain, strconv.Itoa(num)).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("%s -t %s -D %s %d: %w: %s", cmd, table, chain, num, err, out))
				}
			}
		}
	}
	for _, op := range []string{"-F", "-X"} {
		for tc := range added {
			table, chain, _ := strings.Cut(tc, "/")
			if out, err := exec.Command(cmd, "-w", "5", "-t", table, op, chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s %s %s: %w: %s", cmd, table, op, chain, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// nftTables lists the nftables tables, as FAMILY NAME.
func nftTables() []string {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil
	}
	var tables []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if rest, ok := strings.CutPrefix(line, "table "); ok {
			tables = append(tables, rest)
		}
	}
	return tables
}

// removeEmptyTables deletes the nftables tables that were not there before and hold no
// rule any more: the ones iptables-nft made for the cluster's rules.
func removeEmptyTables(before []string) error {
	var errs []error
	for _, t := range nftTables() {
		if slices.Contains(before, t) {
			continue
		}
		out, err := exec.Command("nft", append([]string{"list", "table"}, strings.Fields(t)...)...).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("nft list table %s: %w", t, err))
			continue
		}
		if tableHasRules(string(out)) {
			continue
		}
		if out, err := exec.Command("nft", append([]string{"delete", "table"}, strings.Fields(t)...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete table %s: %w: %s", t, err, out))
		}
	}
	return errors.Join(errs...)
}

// tableHasRules says whether `nft list table` output holds anything but chain
// declarations: a rule, a set, a map.
func tableHasRules(listing string) bool {
	for _, line := range strings.Split(listing, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", line == "}", strings.HasPrefix(line, "table "), strings.HasPrefix(line, "chain "),
			strings.HasPrefix(line, "type ") && strings.Contains(line, " hook "):
		default:
			return true
		}
	}
	return false
}
