package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/bus/bustest"
)

// probeView is what a test compares: whether the resource was found and
// whether the probe could ask at all.
type probeView struct {
	Kind      kanade.ResourceKind
	Name      string
	Exists    bool
	Unchecked bool
}

func view(statuses []kanade.ResourceStatus) []probeView {
	out := make([]probeView, len(statuses))
	for i, s := range statuses {
		out[i] = probeView{s.Kind, s.Name, s.Exists, s.Err != nil}
	}
	return out
}

// expected is every resource present, except those named in missing
// (answered as absent) and, when unchecked, all of them could not be asked.
func expected(missing map[string]bool, unchecked bool) []probeView {
	var out []probeView
	for _, r := range kanade.Resources(1) {
		v := probeView{Kind: r.Kind, Name: r.Name, Exists: !unchecked && !missing[r.Name], Unchecked: unchecked}
		out = append(out, v)
	}
	return out
}

func TestProbeReportsEachResource(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, s *bustest.Server)
		missing map[string]bool
	}{
		{name: "a bootstrapped server has every resource", damage: func(*testing.T, *bustest.Server) {}},
		{
			name: "a deleted stream is missing",
			damage: func(t *testing.T, s *bustest.Server) {
				if err := s.JS.DeleteStream(t.Context(), kanade.StreamAudit); err != nil {
					t.Fatal(err)
				}
			},
			missing: map[string]bool{kanade.StreamAudit: true},
		},
		{
			name: "a deleted KV bucket is missing",
			damage: func(t *testing.T, s *bustest.Server) {
				if err := s.JS.DeleteKeyValue(t.Context(), kanade.BucketJobs); err != nil {
					t.Fatal(err)
				}
			},
			missing: map[string]bool{kanade.BucketJobs: true},
		},
		{
			name: "a deleted object store and a deleted stream are both missing",
			damage: func(t *testing.T, s *bustest.Server) {
				if err := s.JS.DeleteObjectStore(t.Context(), kanade.ObjectResultOutput); err != nil {
					t.Fatal(err)
				}
				if err := s.JS.DeleteStream(t.Context(), "INVENTORY"); err != nil {
					t.Fatal(err)
				}
			},
			missing: map[string]bool{kanade.ObjectResultOutput: true, "INVENTORY": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bustest.StartBootstrapped(t)
			tt.damage(t, s)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			got := bus.Prober{Client: bus.Static(s.Bus), Replicas: 1}.Probe(ctx)
			if diff := cmp.Diff(expected(tt.missing, false), view(got)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeWithoutServerAnswersWithinDeadline(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(s *bustest.Server)
	}{
		{"server shut down (client keeps reconnecting)", func(s *bustest.Server) { s.Shutdown(); s.WaitForShutdown() }},
		{"connection closed", func(s *bustest.Server) { s.NC.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bustest.StartBootstrapped(t)
			tt.breakIt(s)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			start := time.Now()
			got := bus.Prober{Client: bus.Static(s.Bus), Replicas: 1}.Probe(ctx)
			// A bound on a failure path, not a performance target: the probe
			// must not outlive its deadline by much.
			if elapsed := time.Since(start); elapsed >= 3*time.Second {
				t.Errorf("probe took %v with a 2s deadline", elapsed)
			}
			if diff := cmp.Diff(expected(nil, true), view(got)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeReportsDeadlineForUnfinishedChecks(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	s.Shutdown()
	s.WaitForShutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	for _, st := range (bus.Prober{Client: bus.Static(s.Bus)}).Probe(ctx) {
		// The server went away: a check ends at the deadline, or earlier
		// when the client notices the connection drop.
		if !errors.Is(st.Err, context.DeadlineExceeded) && !errors.Is(st.Err, bus.ErrDropped) {
			t.Errorf("%s: err = %v, want one wrapping context.DeadlineExceeded or bus.ErrDropped", st.Name, st.Err)
		}
	}
}

func TestProbeWithoutJetStreamReportsEveryResourceUnchecked(t *testing.T) {
	got := bus.Prober{}.Probe(t.Context())
	if diff := cmp.Diff(expected(nil, true), view(got)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}
