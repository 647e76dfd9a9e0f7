//go:build race

package policy

// raceEnabled: under the race detector sync.Pool drops items on purpose, so pooled
// scratch space is allocated again and allocation counts mean nothing.
const raceEnabled = true
