package hack

import (
	"bufio"
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// TestDockerfileBuildStage checks the Dockerfile without a Docker engine (`make
// docker-build-check`): it lays out a build context with exactly what the build stage
// COPYs, runs the stage's `go build` RUN line there with the local Go toolchain and the
// stage's ARG defaults, and checks that the result is the static Linux executable the
// distroless final stage can run (no program interpreter, no shared libraries), at the
// path the final stage copies. It also checks that the builder image's Go is at least the
// go.mod's, and that the final stage runs as a numeric non-root user.
//
// The first run compiles every package with -trimpath and CGO_ENABLED=0 (a couple of
// minutes on two cores); later runs hit the build cache.
func TestDockerfileBuildStage(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	build, final := stages["build"], stages[""]
	if build == nil || final == nil {
		t.Fatalf("Dockerfile: want a build stage named build and an unnamed final stage, got %v", stageNames(stages))
	}

	checkGoVersion(t, root, build)

	// The build context: what the build stage COPYs, where it copies it.
	context := t.TempDir()
	workdir := "/"
	var buildLine string
	for _, ins := range build.instructions {
		switch ins.cmd {
		case "WORKDIR":
			workdir = ins.args
		case "COPY":
			fields := strings.Fields(ins.args)
			if len(fields) < 2 || strings.HasPrefix(fields[0], "--") {
				t.Fatalf("Dockerfile: build stage COPY %q: only plain COPY SRC... DST is understood here", ins.args)
			}
			dst := fields[len(fields)-1]
			for _, src := range fields[:len(fields)-1] {
				target := filepath.Join(context, strings.TrimPrefix(pathIn(workdir, dst), "/"))
				if strings.HasSuffix(dst, "/") && !isDir(filepath.Join(root, src)) {
					target = filepath.Join(target, filepath.Base(src))
				}
				copyTree(t, filepath.Join(root, src), target)
			}
		case "RUN":
			if strings.Contains(ins.args, "go build") {
				buildLine = ins.args
			}
		}
	}
	if buildLine == "" {
		t.Fatal("Dockerfile: the build stage has no RUN ... go build line")
	}

	// The final stage's COPY --from=build names the binary the build must produce.
	var binary string
	for _, ins := range final.instructions {
		if m := regexp.MustCompile(`^--from=build\s+(\S+)\s+\S+$`).FindStringSubmatch(ins.args); ins.cmd == "COPY" && m != nil {
			binary = m[1]
		}
	}
	out := regexp.MustCompile(`\s-o\s+(\S+)`).FindStringSubmatch(buildLine)
	switch {
	case binary == "":
		t.Fatal("Dockerfile: the final stage has no COPY --from=build SRC DST")
	case out == nil || pathIn(workdir, out[1]) != binary:
		t.Fatalf("Dockerfile: the build stage writes %v, the final stage copies %s", out, binary)
	}
	local := filepath.Join(t.TempDir(), "out", filepath.Base(binary))
	// BuildKit sets the platform ARGs a stage declares without a default; as for a build
	// on this machine.
	for name, value := range map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "BUILDOS": runtime.GOOS, "BUILDARCH": runtime.GOARCH} {
		if v, declared := build.args[name]; declared && v == "" {
			build.args[name] = value
		}
	}
	command := expand(t, strings.Replace(buildLine, out[0], " -o "+local, 1), build.args)

	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = filepath.Join(context, strings.TrimPrefix(workdir, "/"))
	// GOTOOLCHAIN=local: build with this toolchain, as the builder image does with its
	// own, rather than downloading the one go.mod names.
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=")
	t.Logf("in a context of the build stage's COPYs: %s", command)
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command failed (does the build stage COPY every directory the binary needs?): %v\n%s", err, output)
	}

	f, err := elf.Open(local)
	if err != nil {
		t.Fatalf("%s is not an ELF executable: %v", binary, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter (PT_INTERP): it is dynamically linked and cannot run on a distroless static base", binary)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v (%v)", binary, libs, err)
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[build.args["TARGETARCH"]]
	if wantMachine != 0 && f.Machine != wantMachine {
		t.Errorf("%s is for %v, TARGETARCH %s wants %v", binary, f.Machine, build.args["TARGETARCH"], wantMachine)
	}

	user := ""
	for _, ins := range final.instructions {
		if ins.cmd == "USER" {
			user = ins.args
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
		t.Errorf("Dockerfile: the final stage's USER is %q, want a numeric non-root UID (runAsNonRoot can verify only numbers)", user)
	}
}

// checkGoVersion fails when the builder image's Go (its FROM, golang:X.Y.Z...)
// is older than go.mod's go directive: the image would refuse (or try to download) the
// toolchain.
func checkGoVersion(t *testing.T, root string, build *stage) {
	t.Helper()
	image := expand(t, build.from, build.global)
	m := regexp.MustCompile(`^golang:(\d+\.\d+(?:\.\d+)?)`).FindStringSubmatch(image)
	if m == nil {
		t.Fatalf("Dockerfile: the builder image %q is not golang:<version>...", image)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	gm := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindSubmatch(mod)
	if gm == nil {
		t.Fatal("go.mod has no go directive")
	}
	if slices.Compare(versionNumbers(m[1]), versionNumbers(string(gm[1]))) < 0 {
		t.Errorf("Dockerfile: the builder image has Go %s, go.mod needs %s", m[1], gm[1])
	}
}

// versionNumbers splits a Go version such as 1.26.8 into its numbers (1.26 is 1.26.0).
func versionNumbers(v string) []int {
	var out []int
	for _, part := range strings.Split(v, ".") {
		n, _ := strconv.Atoi(part)
		out = append(out, n)
	}
	for len(out) < 3 {
		out = append(out, 0)
	}
	return out
}

// A Dockerfile stage: its instructions and ARG defaults.
type stage struct {
	instructions []instruction
	// args are the ARGs the stage declares, with their defaults; a global ARG redeclared
	// without one keeps the global default.
	args map[string]string
	// global are the ARGs declared before the first FROM, which FROM lines use.
	global map[string]string
	// from is the FROM line's image, as written.
	from string
}

type instruction struct{ cmd, args string }

// parseDockerfile reads the stages of a Dockerfile by name ("" for unnamed), joining
// continuation lines and skipping comments. It understands what this Dockerfile uses.
func parseDockerfile(t *testing.T, path string) map[string]*stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	global := map[string]string{}
	stages := map[string]*stage{}
	var current *stage
	var line strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line.Len() == 0) {
			continue
		}
		if rest, ok := strings.CutSuffix(text, "\\"); ok {
			line.WriteString(rest + " ")
			continue
		}
		line.WriteString(text)
		cmd, args, _ := strings.Cut(strings.TrimSpace(line.String()), " ")
		line.Reset()
		cmd, args = strings.ToUpper(cmd), strings.TrimSpace(args)
		switch {
		case cmd == "FROM":
			name := ""
			if m := regexp.MustCompile(`(?i)\s+AS\s+(\S+)$`).FindStringSubmatch(args); m != nil {
				name = m[1]
			}
			image := ""
			for _, f := range strings.Fields(args) {
				if !strings.HasPrefix(f, "--") {
					image = f
					break
				}
			}
			current = &stage{args: map[string]string{}, global: global, from: image}
			stages[name] = current
		case cmd == "ARG":
			k, v, hasDefault := strings.Cut(args, "=")
			switch {
			case current == nil:
				global[k] = v
			case hasDefault:
				current.args[k] = v
			default:
				current.args[k] = global[k]
			}
		case current != nil:
			current.instructions = append(current.instructions, instruction{cmd, args})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

func stageNames(stages map[string]*stage) []string {
	var names []string
	for n := range stages {
		names = append(names, n)
	}
	return names
}

// expand replaces ${NAME} and $NAME with the stage's ARG defaults, failing on a
// reference to an ARG without one.
func expand(t *testing.T, s string, args map[string]string) string {
	t.Helper()
	return regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`).ReplaceAllStringFunc(s, func(ref string) string {
		name := strings.Trim(ref, "${}")
		v, ok := args[name]
		if !ok || v == "" {
			t.Fatalf("Dockerfile: %s in the build command has no ARG default", ref)
		}
		return v
	})
}

// pathIn resolves a COPY/-o destination against the stage's WORKDIR.
func pathIn(workdir, p string) string {
	if strings.HasPrefix(p, "/") {
		return filepath.Clean(p)
	}
	return filepath.Join(workdir, p)
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// copyTree copies a file, or a directory recursively, to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s into the build context: %v", src, err)
	}
}
