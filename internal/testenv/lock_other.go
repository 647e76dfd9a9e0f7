//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package testenv

// lockFile is a no-op where flock is unavailable: concurrent first builds of the envtest
// assets are then not serialized.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
