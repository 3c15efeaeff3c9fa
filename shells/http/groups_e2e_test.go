package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus/bustest"
	"github.com/kanade-fleet/backend/storage"
)

// TestWorkerKeepsTheGroupsMirror writes memberships into KV agent_groups
// the way the CLI does while an agent beats: the worker the shell runs
// mirrors them into the database on its own (no request has to catch the
// mirror up), and GET /api/groups shows them with the live member.
func TestWorkerKeepsTheGroupsMirror(t *testing.T) {
	ctx := context.Background()
	nats := bustest.Start(t)
	env := freshEnv(t)
	env["KANADE_NATS_URL"] = nats.URL
	s := start(t, env, "-addr", "127.0.0.1:0")
	s.waitBootstrapped(t)
	kv, err := nats.JS.KeyValue(ctx, kanade.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	for pc, v := range map[string]string{"PC-1": `{"groups":["canary","wave1"]}`, "PC-2": `{"groups":["wave1"]}`} {
		if _, err := kv.Put(ctx, pc, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := nats.Bus.KVState(ctx, kanade.BucketAgentGroups)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(ctx, filepath.Join(env["KANADE_DATA_DIR"], "kanade.db"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := db.GroupsMirror(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Current(st.Created, st.Revision) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker never mirrored the bucket (%+v): the mirror stands at %+v", st, m)
		}
		time.Sleep(20 * time.Millisecond)
	}

	beat := fmt.Sprintf(`{"pc_id":"PC-1","at":%q,"agent_version":"0.45.3"}`, time.Now().UTC().Format(time.RFC3339Nano))
	for {
		if err := nats.NC.Publish("heartbeat.PC-1", []byte(beat)); err != nil {
			t.Fatal(err)
		}
		code, body := get(t, s.base+"api/groups", s.token)
		var got struct {
			Groups []struct {
				Name    string   `json:"name"`
				Members []string `json:"members"`
				Alive   int      `json:"alive"`
			} `json:"groups"`
		}
		if code == 200 && json.Unmarshal([]byte(body), &got) == nil && len(got.Groups) == 2 &&
			got.Groups[0].Name == "canary" && got.Groups[0].Alive == 1 &&
			got.Groups[1].Name == "wave1" && len(got.Groups[1].Members) == 2 && got.Groups[1].Alive == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/groups = %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop(t)
}
