package sim_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sim"
	"github.com/kanade-fleet/backend/storage"
)

func TestInventoryReportsAreStableWithinAnEpochAndChangeNowAndThen(t *testing.T) {
	hint := sim.InventoryHint()
	if len(hint.Explode) != 1 || hint.Explode[0].Table != sim.InventoryTable || !hint.Explode[0].TrackHistory {
		t.Fatalf("hint %+v", hint.Explode)
	}
	var s kanade.Schedule
	if err := json.Unmarshal([]byte(sim.InventorySchedule), &s); err != nil || s.JobID != sim.InventoryJob.ID {
		t.Fatalf("schedule %v %+v", err, s)
	}
	if _, err := kanade.ParseSchedule("sim-inventory-hourly", []byte(sim.InventorySchedule)); err != nil {
		t.Fatal(err)
	}

	inv := sim.NewInventory(7, 150, 3000)
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	changed, same := 0, 0
	chrome := 0
	for pc := range 25 {
		id := "SIM-" + strings.Repeat("0", 3) + string(rune('A'+pc%26))
		prev := ""
		for epoch := range 24 {
			at := base.Add(time.Duration(epoch) * sim.InventoryEpoch)
			out := inv.Report(id, pc, at)
			if again := inv.Report(id, pc, at.Add(sim.InventoryEpoch-time.Second)); again != out {
				t.Fatalf("PC %d: two reports within one epoch differ", pc)
			}
			rep := storage.PrepareInventory(hint, out)
			if rep.Err != nil {
				t.Fatalf("PC %d: %v\n%s", pc, rep.Err, out)
			}
			var facts struct {
				Apps []struct{ Name, Source string } `json:"apps"`
			}
			if err := json.Unmarshal([]byte(out), &facts); err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			for _, a := range facts.Apps {
				if keys[a.Name+"|"+a.Source] {
					t.Fatalf("PC %d: app %s twice", pc, a.Name)
				}
				keys[a.Name+"|"+a.Source] = true
			}
			if len(facts.Apps) < 140 || len(facts.Apps) > 160 {
				t.Errorf("PC %d: %d apps", pc, len(facts.Apps))
			}
			if epoch == 0 && keys["Google Chrome|x64"] {
				chrome++
			}
			apps := out[strings.Index(out, `"apps":`):]
			if prev != "" {
				if prev == apps {
					same++
				} else {
					changed++
				}
			}
			prev = apps
		}
	}
	if changed == 0 || same == 0 {
		t.Errorf("over 23 epochs of 25 PCs: %d reports changed their apps, %d did not", changed, same)
	}
	if chrome < 17 || chrome == 25 {
		t.Errorf("%d of 25 PCs have Chrome", chrome)
	}
	if float64(changed)/float64(changed+same) > 0.5 {
		t.Errorf("%d of %d reports changed their apps: not now and then", changed, changed+same)
	}
	t.Logf("%d reports changed their apps, %d did not; %d of 25 PCs have Chrome", changed, same, chrome)
}

func TestFleetRunsOfTheInventoryJobPrintReports(t *testing.T) {
	f := sim.NewFleet(sim.Config{Agents: 3, Seed: 1, FailureRate: -1, SkipRate: -1})
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	r := f.Run(sim.RunSpec{Agent: 1, Job: sim.InventoryJob, StartedAt: at})
	if rep := storage.PrepareInventory(sim.InventoryHint(), r.Result.Stdout); rep.Err != nil || !strings.Contains(r.Result.Stdout, `"hostname":"sim-000001"`) {
		t.Errorf("run stdout %.80s: %v", r.Result.Stdout, rep.Err)
	}
	other := f.Run(sim.RunSpec{Agent: 1, Job: sim.DefaultJobs()[1], StartedAt: at})
	if other.Result.Stdout != "ok" {
		t.Errorf("another job printed %q", other.Result.Stdout)
	}
}
