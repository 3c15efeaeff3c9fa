package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage"
)

// versionedAgent is an agents row with its version (nil: never reported).
type versionedAgent struct {
	pc      string
	version any
	beat    time.Time
}

// agents writes rows of agents as the projection would (the triggers run).
func (e *manageEnv) agents(rows ...versionedAgent) {
	e.t.Helper()
	ctx := context.Background()
	err := e.db.Update(ctx, func(tx *storage.Tx) error {
		for _, a := range rows {
			at := kanade.FormatTime(a.beat)
			if _, err := tx.Exec(ctx, `INSERT INTO agents (pc_id, agent_version, last_heartbeat, updated_at) VALUES (?, ?, ?, ?)`,
				a.pc, a.version, at, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func TestDeleteAgentIs204AlwaysAndAuditsOnlyARemovedRow(t *testing.T) {
	e := newManageEnv(t, nil)
	e.agents(versionedAgent{"PC-1", "0.43.56", manageNow}, versionedAgent{"PC-2", "0.43.56", manageNow})
	e.must(http.StatusNoContent, http.MethodDelete, "/api/agents/PC-1", "")
	e.must(http.StatusNoContent, http.MethodDelete, "/api/agents/PC-1", "")
	e.must(http.StatusNoContent, http.MethodDelete, "/api/agents/never-seen", "")
	if diff := cmp.Diff([]string{`audit.operator.agent_delete.PC-1 {"sub":"service-token"}`}, e.auditLines()); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	e.must(http.StatusNotFound, http.MethodGet, "/api/agents/PC-1", "")
	e.must(http.StatusOK, http.MethodGet, "/api/agents/PC-2", "")
}

func TestDeleteAgentRefusesAPCIDThatIsNoKey(t *testing.T) {
	e := newManageEnv(t, nil)
	e.agents(versionedAgent{"PC-1", "0.43.56", manageNow})
	for _, bad := range []string{"a.b", "a%20b", "a*", "caf%C3%A9", strings.Repeat("x", 129)} {
		rec := e.must(http.StatusBadRequest, http.MethodDelete, "/api/agents/"+bad, "")
		if !strings.Contains(rec.Body.String(), `"location":"path.pc_id"`) {
			t.Errorf("%s: %s", bad, rec.Body)
		}
	}
	if got := e.auditLines(); len(got) != 0 {
		t.Errorf("audit %v", got)
	}
}

func TestAgentVersionsCountsTotalAndActiveInTheContractsOrder(t *testing.T) {
	e := newManageEnv(t, nil)
	fresh, stale := manageNow.Add(-time.Minute), manageNow.Add(-3*time.Minute)
	e.agents(
		versionedAgent{"PC-01", "0.43.9", fresh}, versionedAgent{"PC-02", "0.43.9", stale},
		versionedAgent{"PC-03", "0.43.56", fresh}, versionedAgent{"PC-04", "0.43.56", fresh}, versionedAgent{"PC-05", "0.43.56", stale},
		versionedAgent{"PC-06", nil, stale}, versionedAgent{"PC-07", nil, manageNow.Add(-2 * time.Minute)},
		versionedAgent{"PC-08", "0.44.0", stale}, versionedAgent{"PC-09", "0.44.0", stale},
		versionedAgent{"PC-10", "1.0.0", fresh},
	)
	rec := e.must(http.StatusOK, http.MethodGet, "/api/agents/versions", "")
	want := `[{"version":"0.43.56","total":3,"active":2},{"version":null,"total":2,"active":1},` +
		`{"version":"0.43.9","total":2,"active":1},{"version":"0.44.0","total":2,"active":0},{"version":"1.0.0","total":1,"active":1}]`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The stale threshold is the configured one.
	e2 := newManageEnv(t, func(c *handlers.Config) { c.StaleThreshold = 5 * time.Minute })
	e2.agents(versionedAgent{"PC-1", "1", stale})
	var got []map[string]any
	if err := json.Unmarshal(e2.must(http.StatusOK, http.MethodGet, "/api/agents/versions", "").Body.Bytes(), &got); err != nil ||
		len(got) != 1 || got[0]["active"] != 1.0 {
		t.Errorf("threshold 5m: %v %v", got, err)
	}
}

func TestAgentVersionsOfNoAgentsIsAnEmptyList(t *testing.T) {
	e := newManageEnv(t, nil)
	if got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, "/api/agents/versions", "").Body.String()); got != "[]" {
		t.Errorf("got %s", got)
	}
}
