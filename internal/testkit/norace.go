//go:build !race

package testkit

// Race is whether the race detector is on (see race.go).
const Race = false
