//go:build race

package testkit

// Race is whether the race detector is on. It multiplies the CPU of the
// pure-Go SQLite by about thirty, which adds nothing to what the detector
// finds in this module's code, so the brute-force reference tests take a
// smaller sample under it; CI runs them at full size without it too
// (`just test`).
const Race = true
