package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/natsd"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestStartsWithoutNATSAndTakesItUpWhenItAppears: monitors poll this
// process to learn that NATS is down, so it must start and say so, serve
// what it can from SQL, and pick NATS up by itself when it comes.
func TestStartsWithoutNATSAndTakesItUpWhenItAppears(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens here yet
	env := freshEnv(t)
	env["KANADE_NATS_URL"] = "nats://" + addr
	s := start(t, env, "-addr", "127.0.0.1:0")

	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"health", "", http.StatusOK},
		{"readyz", "", http.StatusServiceUnavailable},
		{"api/health/fleet", s.token, http.StatusServiceUnavailable},
		{"api/agents", s.token, http.StatusOK},
		{"api/results", s.token, http.StatusOK},
		{"api/jobs", s.token, http.StatusServiceUnavailable},
	} {
		began := time.Now()
		code, body := get(t, s.base+c.path, c.token)
		if code != c.want {
			t.Errorf("GET /%s = %d %s, want %d", c.path, code, body, c.want)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Errorf("GET /%s took %v with NATS down", c.path, d)
		}
	}
	_, body := get(t, s.base+"api/health/fleet", s.token)
	var fleet struct {
		Status    string `json:"status"`
		JetStream struct {
			Missing []string `json:"missing"`
		} `json:"jetstream"`
		Errors map[string]string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &fleet); err != nil {
		t.Fatal(err)
	}
	if fleet.Status != "degraded" || len(fleet.JetStream.Missing) != len(kanade.Resources(1)) ||
		!strings.Contains(fleet.Errors["jetstream"], "not connected") {
		t.Errorf("fleet with NATS down = %s", body)
	}

	// NATS appears: the shell connects, bootstraps and starts its worker.
	srv, err := natsd.Start(natsd.Options{Listen: addr, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	waitCode(t, s.base+"readyz", "", http.StatusOK)
	s.waitBootstrapped(t)
	waitCode(t, s.base+"api/health/fleet", s.token, http.StatusOK)

	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	result := fmt.Sprintf(`{"result_id":"r-after","request_id":"q","pc_id":"PC-1","exit_code":0,"stdout":"","stderr":"",
		"started_at":%q,"finished_at":%q}`, time.Now().UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
	if _, err := js.Publish(context.Background(), "results.q", []byte(result)); err != nil {
		t.Fatal(err)
	}
	waitCode(t, s.base+"api/results/r-after", s.token, http.StatusOK)
}

// waitCode polls url until it answers want.
func waitCode(t *testing.T, url, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a guard against hangs, not a performance target
	for {
		code, body := get(t, url, token)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %s after 30s, want %d", url, code, body, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
