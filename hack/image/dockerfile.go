package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// stage is one FROM section of a Dockerfile.
type stage struct {
	name         string
	args         map[string]string
	instructions [][2]string // command (upper case), arguments
}

// parseDockerfile reads the stages of a Dockerfile, joining continued lines. ARGs
// declared before the first FROM are global defaults.
func parseDockerfile(path string) ([]*stage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var stages []*stage
	global := map[string]string{}
	var line string
	s := bufio.NewScanner(f)
	for s.Scan() {
		text := strings.TrimSpace(s.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line == "") {
			continue
		}
		if strings.HasSuffix(text, `\`) {
			line += strings.TrimSuffix(text, `\`) + " "
			continue
		}
		line += text
		cmd, args, _ := strings.Cut(line, " ")
		cmd, args = strings.ToUpper(cmd), strings.TrimSpace(args)
		line = ""
		switch {
		case cmd == "FROM":
			st := &stage{args: map[string]string{}}
			if m := regexp.MustCompile(`(?i)\s+AS\s+(\S+)$`).FindStringSubmatch(args); m != nil {
				st.name = m[1]
			}
			stages = append(stages, st)
		case cmd == "ARG":
			k, v, _ := strings.Cut(args, "=")
			if len(stages) == 0 {
				global[k] = v
			} else {
				stages[len(stages)-1].args[k] = v
			}
		case len(stages) > 0:
			st := stages[len(stages)-1]
			st.instructions = append(st.instructions, [2]string{cmd, args})
		}
	}
	return stages, s.Err()
}

// friendgateImage builds the binary with the Dockerfile's build stage command and lays
// it out as its final stage says.
func friendgateImage(dockerfile string) (v1.Image, error) {
	stages, err := parseDockerfile(dockerfile)
	if err != nil {
		return nil, err
	}
	var build, final *stage
	for _, st := range stages {
		if st.name == "build" {
			build = st
		}
	}
	if len(stages) > 0 {
		final = stages[len(stages)-1]
	}
	if build == nil || final == nil || final == build {
		return nil, fmt.Errorf("%s: want a build stage named build and a final stage", dockerfile)
	}

	var runLine string
	for _, ins := range build.instructions {
		if ins[0] == "RUN" && strings.Contains(ins[1], "go build") {
			runLine = ins[1]
		}
	}
	var src, dst, user string
	var entrypoint []string
	for _, ins := range final.instructions {
		switch ins[0] {
		case "COPY":
			if m := regexp.MustCompile(`^--from=build\s+(\S+)\s+(\S+)$`).FindStringSubmatch(ins[1]); m != nil {
				src, dst = m[1], m[2]
			}
		case "USER":
			user = ins[1]
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(ins[1]), &entrypoint); err != nil {
				return nil, fmt.Errorf("%s: ENTRYPOINT %s: want the JSON form: %w", dockerfile, ins[1], err)
			}
		}
	}
	out := regexp.MustCompile(`\s-o\s+(\S+)`).FindStringSubmatch(runLine)
	switch {
	case runLine == "":
		return nil, fmt.Errorf("%s: the build stage has no RUN ... go build line", dockerfile)
	case out == nil || out[1] != src:
		return nil, fmt.Errorf("%s: the build stage writes %v, the final stage copies %q", dockerfile, out, src)
	case user == "" || len(entrypoint) == 0:
		return nil, fmt.Errorf("%s: the final stage needs a USER and an ENTRYPOINT", dockerfile)
	}

	tmp, err := os.MkdirTemp("", "friendgate-image")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "friendgate")
	// BuildKit sets the platform ARGs a stage declares without a default; as for a build
	// on this machine.
	for k, v := range map[string]string{"TARGETOS": "linux", "TARGETARCH": goarch(), "BUILDOS": runtime.GOOS, "BUILDARCH": runtime.GOARCH} {
		if d, ok := build.args[k]; ok && d == "" {
			build.args[k] = v
		}
	}
	command := os.Expand(strings.Replace(runLine, out[0], " -o "+bin, 1), func(k string) string { return build.args[k] })
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = filepath.Dir(dockerfile)
	// As in the builder image: its own toolchain, and no VCS stamp (the build context
	// has no .git).
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	fmt.Fprintf(os.Stderr, "image: %s\n", command)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("the Dockerfile's build command: %w", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	base, err := distrolessBase()
	if err != nil {
		return nil, err
	}
	app, err := layer([]file{{path: strings.TrimPrefix(dst, "/"), mode: 0o755, data: data}})
	if err != nil {
		return nil, err
	}
	return image(v1.Config{
		Entrypoint: entrypoint,
		User:       user,
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}, base, app)
}

// distrolessBase stands in for gcr.io/distroless/static-debian12:nonroot, which cannot
// be pulled here: its users and groups (root, nobody, nonroot 65532), /tmp, the nonroot
// home and the CA certificates (this host's Debian bundle).
func distrolessBase() (v1.Layer, error) {
	certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return nil, fmt.Errorf("CA certificates (Debian's ca-certificates): %w", err)
	}
	return layer([]file{
		{path: "etc", mode: 0o755},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{path: "etc/ssl", mode: 0o755},
		{path: "etc/ssl/certs", mode: 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs},
		{path: "home", mode: 0o755},
		{path: "home/nonroot", mode: 0o700, uid: 65532, gid: 65532},
		{path: "tmp", mode: 0o1777},
	})
}

// jsonField is a string field of a JSON object.
func jsonField(data []byte, field string) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return "", err
	}
	s, ok := m[field].(string)
	if !ok {
		return "", fmt.Errorf("%s: %w", field, errNoField)
	}
	return s, nil
}
