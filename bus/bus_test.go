package bus_test

import (
	"testing"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
)

func TestBootstrapIsIdempotentAndReconcilesDrift(t *testing.T) {
	s := bustest.StartBootstrapped(t)
	ctx := t.Context()
	// Drift: someone shrank RESULTS' max age.
	st, err := s.JS.Stream(ctx, kanade.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	want := cfg.MaxAge
	cfg.MaxAge /= 2
	if _, err := s.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.Bus.Bootstrap(ctx, 1); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != want {
		t.Fatalf("max age after bootstrap = %v, want %v", info.Config.MaxAge, want)
	}
	exec, err := s.JS.Stream(ctx, kanade.StreamExec)
	if err != nil {
		t.Fatal(err)
	}
	if got := exec.CachedInfo().Config.MaxMsgsPerSubject; got != 1 {
		t.Fatalf("EXEC max msgs per subject = %d, want 1", got)
	}
}
