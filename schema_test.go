package kanade_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas must accept exactly what POST /api/jobs and
// /api/schedules accept (control.md §8.1): strict decoding, then
// validation. Each corpus document is checked both ways. JSON Schema
// cannot say everything the validators check; each such rule is a named
// gap below, and a document that shows one must be accepted by the schema
// and refused by the validator, so a gap that closes (or a new one that
// opens) fails the test instead of hiding.
var schemaGaps = map[string]string{
	"positive-duration": "a duration must be greater than zero (execute.timeout, when.*.every, starting_deadline): " +
		"a pattern can refuse 0s but not 0.0s, 0d0h or 0ms0s without becoming unreadable",
	"duration-range":    "a duration must fit Go's time.Duration (under about 290 years)",
	"retry-backoff-min": "on_failure.retry.backoff must be at least 1s",
	"byte-length":       "ids and tokens are bounded in bytes (128); a schema counts characters",
	"bound-order":       "active.from must be before active.until",
	"zone-exists":       "tz must name a zone of the IANA database, not only look like one",
	"date-exists":       "a calendar date (one-shot at, active bounds) must exist, not only have the digits of one",
	"inventory-names": "an inventory explode spec's primary_key entries must be declared columns, its names unique " +
		"(SQL ignores case) and not reserved (pc_id, job_id, collected_at, sqlite_*)",
}

type schemaCase struct {
	name string
	doc  string
	gap  string // the schemaGaps entry the document shows, or ""
	ok   bool   // the validators must accept it (and refuse it when false)
}

const minimalManifest = `{"id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"5m"}}`

func manifestCorpus(t *testing.T) []schemaCase {
	m := func(patch string) string { return mergeJSON(t, minimalManifest, patch) }
	return []schemaCase{
		// Accepted by both.
		{"minimal", minimalManifest, "", true},
		{"every field", manifestJSON, "", true},
		{"upstream's hints and approval", m(`{"require_approval":true,"emit":{"type":"events","watermark_path":"C:\\w"},"inventory":null,` +
			`"client":{"name":"Fix Wi-Fi","category":"troubleshoot","icon":"wifi"}}`), "", true},
		{"check and collect together", m(`{"check":{"name":"disk","label":"Disk","fleet":true},"collect":{"name":"logs","max_size":"50 MiB","files_field":"files"}}`), "", true},
		{"a script object", m(`{"execute":{"script":null,"script_object":"cleanup/1.0.1"}}`), "", true},
		{"a script file", m(`{"execute":{"script":null,"script_file":"scripts/a.ps1"}}`), "", true},
		{"an emptied script next to an object", m(`{"execute":{"script":"","script_object":"cleanup/1"}}`), "", true},
		{"null optional members", `{"id":"job","version":"1","description":null,"staleness":null,"emit":null,"target":null,"rollout":null,` +
			`"on_failure":null,"execute":{"shell":"sh","script":"x","script_file":null,"timeout":"5m","jitter":null,"run_as":null}}`, "", true},
		{"this backend's target, rollout and jitter", m(`{"target":{"all":false,"groups":["canary"],"pcs":["PC-1"]},` +
			`"rollout":{"waves":[{"group":"canary","delay":"0s"},{"group":"wave1"}]},"execute":{"jitter":"1.5d"}}`), "", true},
		{"durations with days and spaces", m(`{"execute":{"timeout":" 1d12h "}}`), "", true},
		{"staleness unchecked", m(`{"staleness":{"mode":"unchecked"}}`), "", true},
		{"staleness strict", m(`{"staleness":{"mode":"strict","max_cache_age":"0s"}}`), "", true},
		{"a retry", m(`{"on_failure":{"retry":{"max":10,"backoff":"1m"}}}`), "", true},
		{"emit with a null inventory", `{"id":"job","version":"1","execute":{"shell":"sh","script":"x","timeout":"5m"},"emit":{"type":"events"},"inventory":null}`, "", true},
		{"an empty on_failure", m(`{"on_failure":{}}`), "", true},
		{"an inventory with explode and history", m(`{"inventory":{"display":[{"field":"hostname","label":"Host"}],` +
			`"explode":[{"field":"apps","table":"inventory_sw_apps","primary_key":["name","source"],` +
			`"columns":[{"field":"name","index":true},{"field":"source","type":"text"},{"field":"size_kb","type":"integer"},{"field":"x","type":"real"}],` +
			`"track_history":true}],"history_scalars":["os_version"]}}`), "", true},

		// Refused by both.
		{"no id", m(`{"id":null}`), "", false},
		{"an id with a dot", m(`{"id":"a.b"}`), "", false},
		{"an id with a space", m(`{"id":"a b"}`), "", false},
		{"an id of 129 characters", m(`{"id":"` + strings.Repeat("a", 129) + `"}`), "", false},
		{"a blank version", m(`{"version":"  "}`), "", false},
		{"a version that is a number", m(`{"version":1}`), "", false},
		{"no execute", m(`{"execute":null}`), "", false},
		{"an unknown shell", m(`{"execute":{"shell":"bash"}}`), "", false},
		{"no script source", m(`{"execute":{"script":null}}`), "", false},
		{"only an emptied script", m(`{"execute":{"script":""}}`), "", false},
		{"two script sources", m(`{"execute":{"script_object":"a/1"}}`), "", false},
		{"three script sources", m(`{"execute":{"script_object":"a/1","script_file":"a.ps1"}}`), "", false},
		{"a script object without a version", m(`{"execute":{"script":null,"script_object":"cleanup"}}`), "", false},
		{"a timeout that is not a duration", m(`{"execute":{"timeout":"soon"}}`), "", false},
		{"a negative timeout", m(`{"execute":{"timeout":"-5s"}}`), "", false},
		{"no timeout", m(`{"execute":{"timeout":null}}`), "", false},
		{"an unknown run_as", m(`{"execute":{"run_as":"root"}}`), "", false},
		{"strict staleness without an age", m(`{"staleness":{"mode":"strict"}}`), "", false},
		{"an age without strict", m(`{"staleness":{"mode":"cached","max_cache_age":"1h"}}`), "", false},
		{"staleness without a mode", m(`{"staleness":{}}`), "", false},
		{"an emit of another type", m(`{"emit":{"type":"metrics"}}`), "", false},
		{"emit with inventory", m(`{"emit":{"type":"events"},"inventory":{"display":[]}}`), "", false},
		{"emit with collect", m(`{"emit":{"type":"events"},"collect":{"name":"logs"}}`), "", false},
		{"a check without a name", m(`{"check":{"label":"Disk"}}`), "", false},
		{"a blank check label", m(`{"check":{"name":"disk","label":" "}}`), "", false},
		{"an inventory without display", m(`{"inventory":{"summary":[]}}`), "", false},
		{"a hint that is not an object", m(`{"check":"disk"}`), "", false},
		{"a collect size that is not one", m(`{"collect":{"name":"logs","max_size":"huge"}}`), "", false},
		{"a client of an unknown category", m(`{"client":{"name":"x","category":"games"}}`), "", false},
		{"a retry of no attempts", m(`{"on_failure":{"retry":{"max":0,"backoff":"1m"}}}`), "", false},
		{"a retry of 11 attempts", m(`{"on_failure":{"retry":{"max":11,"backoff":"1m"}}}`), "", false},
		{"a retry without a backoff", m(`{"on_failure":{"retry":{"max":1}}}`), "", false},
		{"a target group with a dot", m(`{"target":{"groups":["a.b"]}}`), "", false},
		{"a rollout without waves", m(`{"rollout":{"strategy":"wave","waves":[]}}`), "", false},
		{"a rollout of another strategy", m(`{"rollout":{"strategy":"canary","waves":[{"group":"a"}]}}`), "", false},
		{"a wave without a group", m(`{"rollout":{"waves":[{"delay":"1h"}]}}`), "", false},
		{"a wave delay that is not a duration", m(`{"rollout":{"waves":[{"group":"a","delay":"later"}]}}`), "", false},
		{"an unknown key", m(`{"signature":"x"}`), "", false},
		{"an unknown nested key", m(`{"execute":{"scirpt":"x"}}`), "", false},
		{"an unknown key in a hint", m(`{"check":{"name":"disk","colour":"red"}}`), "", false},
		{"approval that is a string", m(`{"require_approval":"yes"}`), "", false},
		{"an inventory table with a dash", m(`{"inventory":{"display":[],"explode":[{"field":"a","table":"sw-apps","primary_key":["n"],"columns":[{"field":"n"}]}]}}`), "", false},
		{"an inventory column with a quote", m(`{"inventory":{"display":[],"explode":[{"field":"a","table":"t","primary_key":["n"],"columns":[{"field":"n"},{"field":"x\""}]}]}}`), "", false},
		{"an inventory column of an unknown type", m(`{"inventory":{"display":[],"explode":[{"field":"a","table":"t","primary_key":["n"],"columns":[{"field":"n","type":"blob"}]}]}}`), "", false},
		{"an inventory spec without a key", m(`{"inventory":{"display":[],"explode":[{"field":"a","table":"t","primary_key":[],"columns":[{"field":"n"}]}]}}`), "", false},

		// Known gaps: the schema accepts, the validator refuses.
		{"a zero timeout", m(`{"execute":{"timeout":"0s"}}`), "positive-duration", false},
		{"a timeout past 290 years", m(`{"execute":{"timeout":"3000000h"}}`), "duration-range", false},
		{"a retry backoff under a second", m(`{"on_failure":{"retry":{"max":1,"backoff":"500ms"}}}`), "retry-backoff-min", false},
		{"a group of 100 two-byte characters", m(`{"target":{"groups":["` + strings.Repeat("é", 100) + `"]}}`), "byte-length", false},
		{"an inventory key that is not a column", m(`{"inventory":{"display":[],"explode":[{"field":"a","table":"t","primary_key":["k"],"columns":[{"field":"n"}]}]}}`), "inventory-names", false},
		{"an inventory column named pc_id", m(`{"inventory":{"display":[],"explode":[{"field":"a","table":"t","primary_key":["n"],"columns":[{"field":"n"},{"field":"pc_id"}]}]}}`), "inventory-names", false},
	}
}

func scheduleCorpus(t *testing.T) []schemaCase {
	const base = `{"id":"s1","when":{"per_pc":"once"},"job_id":"j1","target":{"all":true}}`
	s := func(patch string) string { return mergeJSON(t, base, patch) }
	// when replaces the whole when object (mergeJSON would merge two forms).
	w := func(when string) string { return mergeJSON(t, s(`{"when":null}`), `{"when":`+when+`}`) }
	return []schemaCase{
		// Accepted by both.
		{"minimal", base, "", true},
		{"per_pc every", w(`{"per_pc":{"every":"6h"}}`), "", true},
		{"per_target once", w(`{"per_target":"once"}`), "", true},
		{"per_target every day", w(`{"per_target":{"every":"1d"}}`), "", true},
		{"a daily calendar", w(`{"calendar":{"at":"09:00"}}`), "", true},
		{"a calendar on week days", w(`{"calendar":{"at":"23:59","days":["mon-fri","SUN"]}}`), "", true},
		{"a one-shot", w(`{"calendar":{"at":"2026-06-10 09:00"}}`), "", true},
		{"a one-shot with null days", `{"id":"s1","when":{"calendar":{"at":"2026-06-10 09:00","days":null}},"job_id":"j1","target":{"all":true}}`, "", true},
		{"the other forms null", `{"id":"s1","when":{"per_pc":"once","per_target":null,"calendar":null},"job_id":"j1","target":{"all":true}}`, "", true},
		{"every field", s(`{"target":{"all":false,"groups":["office"],"pcs":["pc-1"]},` +
			`"rollout":{"strategy":"wave","waves":[{"group":"canary","delay":"0s"},{"group":"office","delay":"1h"}]},` +
			`"jitter":"5m","starting_deadline":"1d","active":{"from":"2026-01-01","until":"2027-01-01T00:00:00+09:00"},` +
			`"tz":"Europe/Berlin","runs_on":"agent","enabled":false,"on_failure":{"retry":{"max":2,"backoff":"30s"}}}`), "", true},
		{"only an active start", s(`{"active":{"from":"2026-01-01T09:00:00Z"}}`), "", true},
		{"tz utc", s(`{"tz":"utc"}`), "", true},
		{"null optional members", `{"id":"s1","when":{"per_pc":"once"},"job_id":"j1","target":{"all":true,"groups":null},"rollout":null,"jitter":null,` +
			`"active":{"from":null},"tz":null,"runs_on":null,"enabled":null,"on_failure":{"retry":null},"starting_deadline":null}`, "", true},

		// Refused by both.
		{"no when", s(`{"when":null}`), "", false},
		{"an empty when", w(`{}`), "", false},
		{"two when forms", w(`{"per_pc":"once","per_target":"once"}`), "", false},
		{"a cadence that is a typo", w(`{"per_pc":"onec"}`), "", false},
		{"an every that is not a duration", w(`{"per_pc":{"every":"often"}}`), "", false},
		{"an every with another key", w(`{"per_pc":{"every":"1h","evry":"1h"}}`), "", false},
		{"a calendar at 25:00", w(`{"calendar":{"at":"25:00"}}`), "", false},
		{"a calendar at 9:00", w(`{"calendar":{"at":"9:00"}}`), "", false},
		{"a calendar on funday", w(`{"calendar":{"at":"09:00","days":["funday"]}}`), "", false},
		{"a one-shot with days", w(`{"calendar":{"at":"2026-06-10 09:00","days":["mon"]}}`), "", false},
		{"a calendar without at", w(`{"calendar":{"days":["mon"]}}`), "", false},
		{"no target", s(`{"target":null}`), "", false},
		{"a target naming nobody", s(`{"target":{"all":false,"groups":[],"pcs":[]}}`), "", false},
		{"a target pc with a space", s(`{"target":{"pcs":["PC 1"]}}`), "", false},
		{"a job id with a dot", s(`{"job_id":"a.b"}`), "", false},
		{"no job id", s(`{"job_id":null}`), "", false},
		{"an id with two dots", s(`{"id":"a..b"}`), "", false},
		{"an id that ends in a dot", s(`{"id":"a."}`), "", false},
		{"a tz with a space", s(`{"tz":"Europe/New York"}`), "", false},
		{"runs_on the cloud", s(`{"runs_on":"cloud"}`), "", false},
		{"an active bound in words", s(`{"active":{"from":"July 1st"}}`), "", false},
		{"an active bound with a lower-case t", s(`{"active":{"from":"2026-01-01t00:00:00Z"}}`), "", false},
		{"an active bound with a lower-case z", s(`{"active":{"from":"2026-01-01T00:00:00z"}}`), "", false},
		{"a rollout without waves", s(`{"rollout":{"waves":[]}}`), "", false},
		{"a jitter that is not a duration", s(`{"jitter":"a bit"}`), "", false},
		{"a negative starting deadline", s(`{"starting_deadline":"-1s"}`), "", false},
		{"enabled that is a string", s(`{"enabled":"yes"}`), "", false},
		{"an unknown key", s(`{"cron":"* * * * *"}`), "", false},
		{"an unknown key in active", s(`{"active":{"form":"2026-01-01"}}`), "", false},

		// Known gaps: the schema accepts, the validator refuses.
		{"an every of zero", w(`{"per_target":{"every":"0s"}}`), "positive-duration", false},
		{"a starting deadline of zero", s(`{"starting_deadline":"0m"}`), "positive-duration", false},
		{"an active window that ends before it starts", s(`{"active":{"from":"2027-01-01","until":"2026-01-01"}}`), "bound-order", false},
		{"a zone that does not exist", s(`{"tz":"Mars/Olympus_Mons"}`), "zone-exists", false},
		{"a one-shot on February 30", w(`{"calendar":{"at":"2026-02-30 09:00"}}`), "date-exists", false},
		{"an active bound in month 13", s(`{"active":{"until":"2026-13-01"}}`), "date-exists", false},
		{"an active bound at hour 24", s(`{"active":{"until":"2026-01-01T24:00:00Z"}}`), "date-exists", false},
		{"a pc of 100 two-byte characters", s(`{"target":{"pcs":["` + strings.Repeat("é", 100) + `"]}}`), "byte-length", false},
	}
}

func TestSchemasAcceptWhatTheValidatorsAccept(t *testing.T) {
	used := map[string]bool{}
	for _, tc := range []struct {
		title  string
		schema []byte
		corpus []schemaCase
		accept func(doc []byte) error
	}{
		{"Manifest", kanade.ManifestSchema(), manifestCorpus(t), func(doc []byte) error {
			m, err := kanade.DecodeManifestBody(doc, false)
			if err != nil {
				return err
			}
			return m.Validate()
		}},
		{"Schedule", kanade.ScheduleSchema(), scheduleCorpus(t), func(doc []byte) error {
			s, err := kanade.DecodeScheduleBody(doc, false)
			if err != nil {
				return err
			}
			return s.Validate("")
		}},
	} {
		sch := compileSchema(t, tc.title, tc.schema)
		for _, c := range tc.corpus {
			t.Run(tc.title+"/"+c.name, func(t *testing.T) {
				inst, err := jsonschema.UnmarshalJSON(strings.NewReader(c.doc))
				if err != nil {
					t.Fatalf("corpus document is not JSON: %v\n%s", err, c.doc)
				}
				schemaErr := sch.Validate(inst)
				validErr := tc.accept([]byte(c.doc))
				if c.gap != "" {
					if _, ok := schemaGaps[c.gap]; !ok {
						t.Fatalf("unknown gap %q", c.gap)
					}
					used[c.gap] = true
					if schemaErr != nil || validErr == nil {
						t.Errorf("known gap %q no longer shows: schema error %v, validator error %v\n%s", c.gap, schemaErr, validErr, c.doc)
					}
					return
				}
				if (validErr == nil) != c.ok {
					t.Errorf("validator error %v, want accepted %v, for\n%s", validErr, c.ok, c.doc)
				}
				if (schemaErr == nil) != c.ok {
					t.Errorf("schema error %v, want accepted %v, for\n%s", schemaErr, c.ok, c.doc)
				}
			})
		}
	}
	for gap := range schemaGaps {
		if !used[gap] {
			t.Errorf("gap %q is listed but no corpus document shows it", gap)
		}
	}
}

func TestSchemasAreDraft202012WithTheirTitles(t *testing.T) {
	for title, schema := range map[string][]byte{"Manifest": kanade.ManifestSchema(), "Schedule": kanade.ScheduleSchema()} {
		var doc struct {
			Schema string         `json:"$schema"`
			Title  string         `json:"title"`
			Defs   map[string]any `json:"$defs"`
		}
		if err := json.Unmarshal(schema, &doc); err != nil {
			t.Fatalf("%s schema is not JSON: %v", title, err)
		}
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.Title != title || len(doc.Defs) == 0 {
			t.Errorf("%s schema: $schema %q title %q, %d $defs", title, doc.Schema, doc.Title, len(doc.Defs))
		}
		if !bytes.Equal(schema, map[string]func() []byte{"Manifest": kanade.ManifestSchema, "Schedule": kanade.ScheduleSchema}[title]()) {
			t.Errorf("%s schema differs between two calls", title)
		}
	}
	// when is a oneOf of single-key objects (control.md §8.1).
	var s struct {
		Defs map[string]struct {
			OneOf []struct {
				Required []string `json:"required"`
			} `json:"oneOf"`
		} `json:"$defs"`
	}
	json.Unmarshal(kanade.ScheduleSchema(), &s)
	var keys []string
	for _, b := range s.Defs["When"].OneOf {
		keys = append(keys, strings.Join(b.Required, "+"))
	}
	if strings.Join(keys, ",") != "per_pc,per_target,calendar" {
		t.Errorf("when's oneOf branches require %v, want per_pc, per_target, calendar", keys)
	}
}

// compileSchema compiles a schema with the metaschema check the library
// does on Compile, so a malformed schema fails here.
func compileSchema(t *testing.T, title string, schema []byte) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		t.Fatalf("%s schema is not JSON: %v", title, err)
	}
	c := jsonschema.NewCompiler()
	url := "https://kanade.invalid/" + title + ".json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile the %s schema: %v", title, err)
	}
	return sch
}

// mergeJSON is base with patch merged in, objects member by member at
// every level; a member patched to null is removed.
func mergeJSON(t *testing.T, base, patch string) string {
	t.Helper()
	var b, p any
	if err := json.Unmarshal([]byte(base), &b); err != nil {
		t.Fatalf("base %s: %v", base, err)
	}
	if err := json.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	out, err := json.Marshal(merge(b, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func merge(base, patch any) any {
	bm, ok1 := base.(map[string]any)
	pm, ok2 := patch.(map[string]any)
	if !ok1 || !ok2 {
		return patch
	}
	for k, v := range pm {
		if v == nil {
			delete(bm, k)
			continue
		}
		bm[k] = merge(bm[k], v)
	}
	return bm
}
