package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// load imports image archives (docker save or OCI layout tarballs) into containerd's
// k8s.io namespace, where the kubelet finds them: the pods use imagePullPolicy Never,
// since the cluster reaches no registry.
func load(ctx context.Context, c *config, archives []string) error {
	if len(archives) == 0 {
		return errors.New("load: name the image archives to import")
	}
	for _, a := range archives {
		cmd := exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "images", "import", a)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("importing %s: %w", a, err)
		}
	}
	return nil
}
