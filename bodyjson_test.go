package kanade_test

import (
	"testing"

	"github.com/kanade-fleet/backend"
)

func TestScheduleBodyJSONKeepsTextScalarsOfAYAMLBody(t *testing.T) {
	yamlBody := []byte("# nightly\nid: nightly\njob_id: inv\nwhen:\n  calendar:\n    at: 09:00\n    days: [mon-fri]\ntarget:\n  groups: [canary]\n")
	got, err := kanade.ScheduleBodyJSON(yamlBody, true)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"nightly","job_id":"inv","target":{"groups":["canary"]},"when":{"calendar":{"at":"09:00","days":["mon-fri"]}}}`
	if string(got) != want {
		t.Errorf("YAML body stored as %s, want %s", got, want)
	}
	if _, err := kanade.ParseSchedule("nightly", got); err != nil {
		t.Errorf("the stored JSON does not parse back: %v", err)
	}
	got, err = kanade.ScheduleBodyJSON([]byte("{\n \"id\": \"x\",\n \"future\": {\"a\": 1}\n}"), false)
	if err != nil || string(got) != `{"id":"x","future":{"a":1}}` {
		t.Errorf("JSON body stored as %s, %v", got, err)
	}
}
