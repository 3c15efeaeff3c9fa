// Package testkit holds the small helpers that tests of several packages
// share: a buffer safe to write and read at once, the patcher that builds a
// Schedule JSON from a minimal one, and must-style zone and time parsing.
//
// It is for tests only: no package's non-test code imports it (a test of
// this package checks), and it imports nothing of this module, so the root
// package's own tests can use it without an import cycle. Helpers that need
// a database or NATS live beside their adapter (storage/storagetest,
// bus/bustest).
package testkit

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// SyncBuffer collects output written by one goroutine (a logger, a child
// process's copier, a shell under test) while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// MinimalSchedule is the smallest valid Schedule JSON (scheduler.md): a
// per_pc "once" of job j1 to every PC. Tests patch the fields they are about.
const MinimalSchedule = `{"id":"s1","when":{"per_pc":"once"},"job_id":"j1","target":{"all":true}}`

// Schedule is MinimalSchedule patched with PatchJSON.
func Schedule(tb testing.TB, patch string) []byte {
	tb.Helper()
	return PatchJSON(tb, MinimalSchedule, patch)
}

// PatchJSON returns the JSON object base with the top-level members of the
// object patch replacing its own; a member patched to null is removed. It
// fails the test when either is not a JSON object.
func PatchJSON(tb testing.TB, base, patch string) []byte {
	tb.Helper()
	var doc, p map[string]json.RawMessage
	if err := json.Unmarshal([]byte(base), &doc); err != nil {
		tb.Fatalf("base %s: %v", base, err)
	}
	if err := json.Unmarshal([]byte(patch), &p); err != nil {
		tb.Fatalf("patch %s: %v", patch, err)
	}
	for k, v := range p {
		if string(v) == "null" {
			delete(doc, k)
			continue
		}
		doc[k] = v
	}
	out, err := json.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Location loads an IANA zone, failing the test when the zone database lacks
// it.
func Location(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("tzdata: %v", err)
	}
	return loc
}

// Time parses an RFC 3339 instant (fractions allowed), failing the test when
// it is not one.
func Time(tb testing.TB, s string) time.Time {
	tb.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
