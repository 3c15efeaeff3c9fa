package storage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// TestAgentsPageIsEncodingJSONOfItsRows: the roster's page is built by
// SQLite (json_object) with the float formatted in Go, not by encoding/json
// from the struct. Each row of it must be, byte for byte, what huma's
// encoder (encoding/json without HTML escaping) writes for the same row read
// column by column (GetAgent), over values chosen to differ: quotes,
// backslashes, control characters, HTML characters, non-ASCII, bytes that
// are not UTF-8, SQL, floats
// at the edges of encoding/json's two forms and of 15 significant digits,
// integers beyond 2^53, JSON arrays written with spaces, and every value of
// enforcing.
func TestAgentsPageIsEncodingJSONOfItsRows(t *testing.T) {
	db := storagetest.Open(t, nil)
	ctx := context.Background()
	at := time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)
	texts := []any{nil, "", `a"b\c`, "tab\there\nnl\r\b\f", "\x01\x1f\x7f", "<&>", "日本語 山田 太郎", "emoji 😀",
		"'; DROP TABLE agents; --", "%_\\", "\u00e9\u0301", "x\u2028y\u2029z", "bad\xffutf8\xc3(\xe2\x80"}
	floats := []any{nil, 0.0, 0.1 + 0.2, 1e-7, 1e-6, 9.999999999999999e20, 1e21, 1.2345678901234567e22, 33.333333333333336,
		-2.5, 5.0, 100.0, math.SmallestNonzeroFloat64, math.MaxFloat64, -1e-300, 12.345678901234567}
	ints := []any{nil, 0, int64(1) << 53, int64(1)<<53 + 1, int64(math.MaxInt64), int64(math.MinInt64), -1}
	lists := []any{nil, `[]`, `["0.43.55"]`, ` [ "a\"b" , "<x>", "\u2028" ] `, `["\u00e9","日本"]`, `["\u003cx\u003e\u0026"]`}
	enforcing := []any{nil, 0, 1, 2, -1}
	n := max(len(texts), len(floats), len(ints), len(lists), len(enforcing))
	var ids []string
	for i := range n * 3 {
		pc := fmt.Sprintf("PC-%03d", i)
		ids = append(ids, pc)
		pick := func(xs []any, k int) any { return xs[(i*k+i/len(xs))%len(xs)] }
		beat := kanade.FormatTime(at.Add(-time.Duration(i) * 10 * time.Second))
		mustExec(t, db, `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, agent_cpu_pct,
			agent_rss_bytes, agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions, last_logon_user,
			last_logon_display_name, command_keys, command_protocols, enforcing, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			pc, pick(texts, 1), pick(texts, 5), pick(texts, 7), beat, pick(floats, 1), pick(ints, 1), pick(ints, 3), pick(ints, 5),
			pick(lists, 1), pick(texts, 3), pick(texts, 11), pick(lists, 3), pick(lists, 7), pick(enforcing, 1), beat)
	}
	cutoff := at.Add(-2 * time.Minute)
	for _, limit := range []int{1, 7, 500} {
		f := storage.AgentFilter{PageRequest: storage.PageRequest{Limit: limit}, OnlineSince: cutoff}
		seen := 0
		for {
			// Appended after what dst holds, which the cursor's offsets must
			// not count.
			b, err := db.ListAgentsJSON(ctx, []byte("dst"), f)
			if err != nil {
				t.Fatalf("limit %d: %v", limit, err)
			}
			b, ok := bytes.CutPrefix(b, []byte("dst"))
			if !ok {
				t.Fatalf("limit %d: dst not kept: %.20q", limit, b)
			}
			var page struct {
				Items      []json.RawMessage `json:"items"`
				NextCursor *string           `json:"next_cursor"`
			}
			if err := json.Unmarshal(b, &page); err != nil {
				t.Fatalf("limit %d: not JSON: %v\n%s", limit, err, b)
			}
			for _, item := range page.Items {
				a, err := db.GetAgent(ctx, ids[seen], cutoff)
				if err != nil {
					t.Fatal(err)
				}
				var want bytes.Buffer
				enc := json.NewEncoder(&want)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(a); err != nil {
					t.Fatal(err)
				}
				if w := bytes.TrimSuffix(want.Bytes(), []byte("\n")); !bytes.Equal(item, w) {
					t.Errorf("limit %d, %s:\n got %s\nwant %s", limit, ids[seen], item, w)
				}
				seen++
			}
			if page.NextCursor == nil {
				break
			}
			f.Cursor = *page.NextCursor
		}
		if seen != len(ids) {
			t.Errorf("limit %d: paged through %d agents of %d", limit, seen, len(ids))
		}
	}
	// A list column that is not JSON fails the page, as it fails the row.
	mustExec(t, db, `UPDATE agents SET command_keys = '["a", ' WHERE pc_id = ?`, ids[3])
	if _, err := db.GetAgent(ctx, ids[3], cutoff); err == nil {
		t.Error("GetAgent read a malformed command_keys")
	}
	if b, err := db.ListAgentsJSON(ctx, nil, storage.AgentFilter{PageRequest: storage.PageRequest{Limit: 500}, OnlineSince: cutoff}); err == nil {
		t.Errorf("the page of a malformed command_keys: %s", b)
	}
}
