package testenv

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MountSecret does for the rest of the test what the kubelet does for a Secret volume,
// which envtest has no kubelet for: it writes each key of the Secret as a file into a new
// temporary directory, which it returns, and rewrites them whenever they change. The
// Secret need not have data yet. Each file is replaced by a rename, tls.crt last, so a
// reader that waits for tls.crt (cert-controller, controller-runtime's webhook server)
// never finds it without its key.
func (e *Env) MountSecret(tb testing.TB, key client.ObjectKey) string {
	tb.Helper()
	dir := tb.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.projectSecret(ctx, key, dir) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	return dir
}

// projectSecret keeps dir in step with the Secret until ctx is done.
func (e *Env) projectSecret(ctx context.Context, key client.ObjectKey, dir string) error {
	var written map[string][]byte
	for {
		secret := &corev1.Secret{}
		if err := e.Client.Get(ctx, key, secret); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("testenv: projecting Secret %s: %w", key, err)
		}
		if len(secret.Data) > 0 && !maps.EqualFunc(secret.Data, written, bytes.Equal) {
			names := slices.DeleteFunc(slices.Sorted(maps.Keys(secret.Data)), func(name string) bool { return name == corev1.TLSCertKey })
			if _, ok := secret.Data[corev1.TLSCertKey]; ok {
				names = append(names, corev1.TLSCertKey)
			}
			for _, name := range names {
				tmp := filepath.Join(dir, "."+name+".tmp")
				if err := os.WriteFile(tmp, secret.Data[name], 0o600); err != nil {
					return fmt.Errorf("testenv: projecting Secret %s: %w", key, err)
				}
				if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
					return fmt.Errorf("testenv: projecting Secret %s: %w", key, err)
				}
			}
			written = secret.Data
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
