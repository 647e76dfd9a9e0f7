// Command image assembles container images without a Docker engine, as archives that
// `ctr images import` (hack/cluster load) takes:
//
//	image friendgate -o friendgate.tar -tag friendgate.local/friendgate:dev
//	image pause -o pause.tar -tag friendgate.local/pause:3.10.2
//
// friendgate follows the repository's Dockerfile: it runs the build stage's `go build`
// line with the local Go toolchain and the stage's ARG defaults, and lays the binary
// where the final stage's COPY --from=build puts it, with the final stage's USER and
// ENTRYPOINT, over a base layer standing in for the distroless static nonroot image (its
// users, /tmp, /home/nonroot and the CA certificates). So what the cluster runs is what
// `docker build` makes, but for the base image's provenance.
//
// pause is the sandbox image every pod needs: the Kubernetes release's own pause.c (from
// the k8s.io/kubernetes module, as the release's build/pause does), compiled static.
//
// It is a module of its own so that go-containerregistry stays out of friendgate's.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: image friendgate|pause -o FILE -tag REF [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	out := fs.String("o", "", "archive to write (docker save format)")
	tag := fs.String("tag", "", "image reference the archive names, e.g. friendgate.local/friendgate:dev")
	dockerfile := fs.String("dockerfile", "Dockerfile", "friendgate: the Dockerfile whose recipe to follow; its directory is the build context")
	kube := fs.String("kube-version", "v1.37.2", "pause: the k8s.io/kubernetes release whose build/pause/linux/pause.c to compile")
	_ = fs.Parse(os.Args[2:])
	if *out == "" || *tag == "" {
		fmt.Fprintln(os.Stderr, "image: -o and -tag are required")
		os.Exit(2)
	}
	var img v1.Image
	var err error
	switch os.Args[1] {
	case "friendgate":
		img, err = friendgateImage(*dockerfile)
	case "pause":
		img, err = pauseImage(*kube)
	default:
		err = fmt.Errorf("unknown image %q", os.Args[1])
	}
	if err == nil {
		err = write(*out, *tag, img)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func write(path, tag string, img v1.Image) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// file is one entry of a layer.
type file struct {
	path     string
	mode     int64
	uid, gid int
	data     []byte // nil for a directory
}

// layer builds a layer from files with fixed timestamps, so the same inputs make the
// same digest.
func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.path, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.data == nil {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// image stacks layers on nothing and sets the run configuration.
func image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

func goarch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return string(bytes.TrimSpace(out))
}

// pauseImage compiles the release's pause.c as its build/pause Makefile does (-Os -static)
// and makes the image the kubelet's sandboxes run: /pause as user 65535.
func pauseImage(kubeVersion string) (v1.Image, error) {
	out, err := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+kubeVersion).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w", kubeVersion, err)
	}
	dir, err := jsonField(out, "Dir")
	if err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "build", "pause", "linux", "pause.c")
	tmp, err := os.MkdirTemp("", "pause")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "pause")
	cc := exec.Command("cc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.10.2-friendgate", "-o", bin, src)
	if out, err := cc.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compiling %s: %w\n%s", src, err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	l, err := layer([]file{{path: "pause", mode: 0o755, data: data}})
	if err != nil {
		return nil, err
	}
	return image(v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, l)
}

var errNoField = errors.New("no such field")
