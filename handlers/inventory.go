package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/storage"
)

// The inventory read routes (fleet.md §5.5). Facts, rows and history come
// from the database; the spec a search needs (which table, which columns)
// comes from the job's manifest in KV jobs, read per request so a search
// follows an edit at once. Every filter is checked against that spec
// (storage.ParseInventoryFilters, then again in storage) before anything
// reaches SQL; a parameter the grammar refuses is a 400 naming it.
//
// Two of the routes cannot share Go's ServeMux: /api/inventory/by-job/{id}
// and /api/inventory/{id}/search-scalars both match
// /api/inventory/by-job/search-scalars, and neither pattern is more
// specific. The mux holds one pattern for both, GET
// /api/inventory/{first}/{second}, which hands a request to the first when
// the first segment is literally by-job (the static segment wins, as in
// upstream's router) and to the second when the second is search-scalars
// (inventoryPair, registered through routes).

// inventoryPairPattern is the mux pattern of the two routes above.
const inventoryPairPattern = "GET /api/inventory/{first}/{second}"

// inventoryPair holds the handlers behind inventoryPairPattern.
type inventoryPair struct {
	byJob, scalars http.HandlerFunc
}

// pairedPattern says which of the pair pattern is, if any.
func pairedPattern(pattern string) (byJob, scalars bool) {
	return pattern == "GET /api/inventory/by-job/{manifest_id}", pattern == "GET /api/inventory/{manifest_id}/search-scalars"
}

func (p *inventoryPair) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	first, second := r.PathValue("first"), r.PathValue("second")
	switch {
	case first == "by-job" && p.byJob != nil:
		r.SetPathValue("manifest_id", second)
		p.byJob(w, r)
	case second == "search-scalars" && p.scalars != nil:
		r.SetPathValue("manifest_id", first)
		p.scalars(w, r)
	default:
		http.NotFound(w, r)
	}
}

type inventoryJobsOutput struct{ Body []kanade.InventoryJob }

type inventoryManifestInput struct {
	ManifestID string `path:"manifest_id" doc:"The inventory job's id (its manifest id)."`
}

type inventoryPCInput struct {
	PCID string `path:"pc_id"`
}

// inventoryQuery keeps the raw query string for the routes whose
// parameters are open-ended (filters, identity.<key>).
type inventoryQuery struct{ query url.Values }

// Resolve keeps the query: huma reads only the parameters declared.
func (q *inventoryQuery) Resolve(ctx huma.Context) []error {
	u := ctx.URL()
	q.query = u.Query()
	return nil
}

type inventorySearchInput struct {
	inventoryQuery
	ManifestID string `path:"manifest_id" doc:"The inventory job's id."`
	Field      string `path:"field" doc:"The explode spec's field (the array of the report)."`
	Limit      string `query:"limit" doc:"Rows per answer: default 1000, at most 5000 (more is 5000); unparseable is the default."`
	Offset     string `query:"offset" doc:"Rows to skip: default 0; unparseable is 0."`
}

type inventoryScalarsInput struct {
	inventoryQuery
	ManifestID string `path:"manifest_id" doc:"The inventory job's id."`
	Limit      string `query:"limit" doc:"Rows per answer: default 1000, at most 5000 (more is 5000); unparseable is the default."`
	Offset     string `query:"offset" doc:"Rows to skip: default 0; unparseable is 0."`
}

type inventoryPCHistoryInput struct {
	ManifestID string `path:"manifest_id" doc:"The inventory job's id."`
	PCID       string `path:"pc_id"`
	Field      string `query:"field" doc:"Only events of this field_path."`
	Since      string `query:"since" doc:"RFC 3339 lower bound of observed_at, inclusive."`
	Limit      string `query:"limit" doc:"Events: default 500, at most 5000 (more is 5000)."`
}

type inventoryHistorySearchInput struct {
	inventoryQuery
	ManifestID string `path:"manifest_id" doc:"The inventory job's id."`
	Field      string `query:"field" doc:"Only events of this field_path."`
	Kind       string `query:"kind" doc:"added, removed or changed."`
	Since      string `query:"since" doc:"RFC 3339 date-time lower bound of observed_at, inclusive."`
	Until      string `query:"until" doc:"RFC 3339 date-time upper bound of observed_at, exclusive."`
	Limit      string `query:"limit" doc:"Events: default 500, at most 5000 (more is 5000); unparseable is the default."`
	Offset     string `query:"offset" doc:"Events to skip: default 0; unparseable is 0."`
}

type inventoryFirstSeenInput struct {
	inventoryQuery
	ManifestID string `path:"manifest_id" doc:"The inventory job's id."`
	Field      string `query:"field" doc:"Only events of this field_path."`
	Since      string `query:"since" doc:"RFC 3339 date-time lower bound of observed_at, inclusive."`
	Limit      string `query:"limit" doc:"PCs: default and at most 5000; unparseable is the default."`
	Offset     string `query:"offset" doc:"PCs to skip: default 0; unparseable is 0."`
}

// inventoryRows is the body of the searches: objects whose members depend
// on the spec.
type inventoryRows struct{ Body []json.RawMessage }

func (srv *Server) registerInventory(api huma.API) {
	get := func(id, path, summary, description string) huma.Operation {
		return huma.Operation{OperationID: id, Method: http.MethodGet, Path: path, Summary: summary,
			Description: description, Tags: []string{"inventory"}}
	}
	db := srv.cfg.DB

	huma.Register(api, get("list-inventory-jobs", "/api/inventory/jobs", "Inventory jobs",
		"Every job of KV jobs with an inventory hint, sorted by manifest_id; jobs whose manifest does not parse are left out."),
		func(ctx context.Context, _ *struct{}) (*inventoryJobsOutput, error) {
			return srv.inventoryJobs(ctx)
		})
	registerRead(srv, api, get("get-inventory-by-job", "/api/inventory/by-job/{manifest_id}", "Every PC's facts of one inventory job",
		"Rows ordered by pc_id; display and summary are the snapshots projected with the first row that has them."),
		func(ctx context.Context, in *inventoryManifestInput) (kanade.InventoryByJob, error) {
			return db.InventoryByJob(ctx, in.ManifestID)
		})
	registerRead(srv, api, get("get-inventory-of-pc", "/api/inventory/{pc_id}", "One PC's facts of every inventory job",
		"Ordered by job_id; an unknown PC is []. A PC named jobs or by-job cannot be read here."),
		func(ctx context.Context, in *inventoryPCInput) ([]kanade.InventoryPCFacts, error) {
			return db.InventoryOfPC(ctx, in.PCID)
		})
	huma.Register(api, get("search-inventory", "/api/inventory/{manifest_id}/search/{field}", "Search a derived table across the fleet",
		"Every query parameter but limit and offset is a filter <column>[__<op>]=<value> on a column of the explode spec "+
			"of that field; op is eq (default), ne, lt, le, gt, ge (compared with the value bound as text: numeric on integer "+
			"and real columns), contains, prefix or suffix (LIKE, case-insensitive for ASCII, with %, _ and \\ literal). "+
			"Filters are ANDed; a repeated one keeps its last value; an unknown column or op is 400. "+
			"Rows {pc_id, collected_at, <each column>} ordered by pc_id, collected_at descending, then the primary key."),
		func(ctx context.Context, in *inventorySearchInput) (*inventoryRows, error) {
			return srv.searchInventory(ctx, in)
		})
	huma.Register(api, get("search-inventory-scalars", "/api/inventory/{manifest_id}/search-scalars", "Search top-level facts across the fleet",
		"The search's filter grammar over the job's display fields that are not tables (and are identifiers); a number or "+
			"bytes field compares numbers, so its value must be one. Rows {pc_id, collected_at, <each field>} ordered by pc_id."),
		func(ctx context.Context, in *inventoryScalarsInput) (*inventoryRows, error) {
			return srv.searchInventoryScalars(ctx, in)
		})
	huma.Register(api, get("get-inventory-history-of-pc", "/api/inventory/{manifest_id}/history/pc/{pc_id}", "One PC's inventory changes",
		"Events newest first (observed_at, then id). identity_json, before_json and after_json are JSON strings holding JSON."),
		func(ctx context.Context, in *inventoryPCHistoryInput) (*readsOutput[[]kanade.InventoryHistoryEvent], error) {
			q := storage.HistoryQuery{JobID: in.ManifestID, PCID: in.PCID, Field: in.Field, Limit: storage.InventoryHistoryDefaultLimit}
			var err error
			if q.Since, err = historyTime("since", in.Since); err != nil {
				return nil, err
			}
			if in.Limit != "" {
				n, perr := strconv.Atoi(in.Limit)
				if perr != nil || n < 1 {
					return nil, badParam("limit", in.Limit, "must be a whole number from 1 (at most 5000 are served)")
				}
				q.Limit = min(n, storage.InventoryHistoryMaxLimit)
			}
			return srv.history(ctx, q)
		})
	huma.Register(api, get("search-inventory-history", "/api/inventory/{manifest_id}/history/search", "Inventory changes across the fleet",
		"identity.<key>=<value> matches events whose identity_json has that string value at key (keys match "+
			"^[A-Za-z_][A-Za-z0-9_]{0,63}$); several are ANDed. Events newest first."),
		func(ctx context.Context, in *inventoryHistorySearchInput) (*readsOutput[[]kanade.InventoryHistoryEvent], error) {
			q, err := historySearch(in.ManifestID, in.Field, in.Since, in.query, in.Limit, in.Offset, storage.InventoryHistoryDefaultLimit)
			if err != nil {
				return nil, err
			}
			if in.Kind != "" && in.Kind != "added" && in.Kind != "removed" && in.Kind != "changed" {
				return nil, badParam("kind", in.Kind, "must be added, removed or changed")
			}
			q.Kind = in.Kind
			if q.Until, err = historyTime("until", in.Until); err != nil {
				return nil, err
			}
			return srv.history(ctx, q)
		})
	huma.Register(api, get("inventory-first-seen", "/api/inventory/{manifest_id}/history/first_seen", "When each PC first showed an inventory change",
		"Per PC the earliest observed_at of a matching event, ascending (then by pc_id); field, since and identity.<key> as in the history search."),
		func(ctx context.Context, in *inventoryFirstSeenInput) (*readsOutput[[]kanade.InventoryFirstSeen], error) {
			q, err := historySearch(in.ManifestID, in.Field, in.Since, in.query, in.Limit, in.Offset, storage.InventoryHistoryMaxLimit)
			if err != nil {
				return nil, err
			}
			v, err := srv.cfg.DB.InventoryFirstSeen(ctx, q)
			if err != nil {
				return nil, srv.inventoryProblem(ctx, "inventory first seen", err)
			}
			return &readsOutput[[]kanade.InventoryFirstSeen]{Body: v}, nil
		})
}

// badParam is the 400 of a query parameter.
func badParam(param, value, msg string) error {
	d := &huma.ErrorDetail{Location: "query." + param, Message: msg}
	if len(value) <= 256 {
		d.Value = value
	}
	return huma.Error400BadRequest("invalid query parameter "+param+": "+msg, d)
}

// inventoryProblem maps a storage error: a refused parameter is 400, a
// missing table 404, anything else 500 (readsProblem).
func (srv *Server) inventoryProblem(ctx context.Context, what string, err error) error {
	var qe *storage.QueryError
	if errors.As(err, &qe) {
		return badParam(qe.Param, "", qe.Reason)
	}
	return srv.readsProblem(ctx, what, "", err)
}

// historyTime parses an RFC 3339 date-time bound ("" is none); a bare
// date or anything else is 400.
func historyTime(param, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := kanade.ParseTime(v)
	if err != nil {
		return time.Time{}, badParam(param, v, "must be an RFC 3339 date-time (2026-06-01T00:00:00Z)")
	}
	return t, nil
}

// paging reads limit and offset where unparseable means the default.
func paging(limit, offset string, def, most int) (int, int) {
	l, o := def, 0
	if n, err := strconv.Atoi(limit); err == nil && n >= 1 {
		l = min(n, most)
	}
	if n, err := strconv.Atoi(offset); err == nil && n >= 0 {
		o = n
	}
	return l, o
}

// historySearch reads what the history search and first_seen share.
func historySearch(job, field, since string, query url.Values, limit, offset string, def int) (storage.HistoryQuery, error) {
	q := storage.HistoryQuery{JobID: job, Field: field}
	q.Limit, q.Offset = paging(limit, offset, def, storage.InventoryHistoryMaxLimit)
	var err error
	if q.Since, err = historyTime("since", since); err != nil {
		return q, err
	}
	var ks []string
	for k := range query {
		if strings.HasPrefix(k, "identity.") {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	for _, k := range ks {
		key := strings.TrimPrefix(k, "identity.")
		if !kanade.ValidSQLIdent(key) {
			return q, badParam(k, "", "the key must match ^[A-Za-z_][A-Za-z0-9_]{0,63}$")
		}
		vals := query[k]
		q.Identity = append(q.Identity, storage.IdentityMatch{Key: key, Value: vals[len(vals)-1]})
	}
	return q, nil
}

func (srv *Server) history(ctx context.Context, q storage.HistoryQuery) (*readsOutput[[]kanade.InventoryHistoryEvent], error) {
	v, err := srv.cfg.DB.InventoryHistory(ctx, q)
	if err != nil {
		return nil, srv.inventoryProblem(ctx, "inventory history", err)
	}
	return &readsOutput[[]kanade.InventoryHistoryEvent]{Body: v}, nil
}

// inventoryJobs lists KV jobs' inventory jobs.
func (srv *Server) inventoryJobs(ctx context.Context) (*inventoryJobsOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	es, err := srv.entries(ctx, kanade.BucketJobs)
	if err != nil {
		return nil, err
	}
	out := &inventoryJobsOutput{Body: []kanade.InventoryJob{}}
	for _, e := range es {
		m, err := kanade.ParseManifest(e.Key, e.Value)
		if err != nil {
			continue
		}
		h, err := m.InventorySpec()
		if err != nil || h == nil {
			continue
		}
		j := kanade.InventoryJob{ManifestID: m.ID, Display: h.Display, Summary: h.Summary, Explode: h.Explode}
		if j.Display == nil {
			j.Display = []kanade.DisplayField{}
		}
		if m.Description != "" {
			j.Description = &m.Description
		}
		out.Body = append(out.Body, j)
	}
	return out, nil
}

// inventorySpec reads job's inventory hint: 404 when the job is unknown or
// has no (valid) hint, 503 when KV jobs cannot be read.
func (srv *Server) inventorySpec(ctx context.Context, job string) (*kanade.InventoryHint, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	e, err := srv.get(ctx, kanade.BucketJobs, job)
	if errors.Is(err, errNoSuchKey) {
		return nil, huma.Error404NotFound(fmt.Sprintf("no job %q", kanade.Clip(job)))
	}
	if err != nil {
		return nil, err
	}
	m, err := kanade.ParseManifest(job, e.Value)
	if err != nil {
		return nil, huma.Error404NotFound(fmt.Sprintf("job %q has no valid manifest: %s", kanade.Clip(job), kanade.Clip(err.Error())))
	}
	h, err := m.InventorySpec()
	if err != nil || h == nil {
		return nil, huma.Error404NotFound(fmt.Sprintf("job %q has no inventory hint", kanade.Clip(job)))
	}
	return h, nil
}

func (srv *Server) searchInventory(ctx context.Context, in *inventorySearchInput) (*inventoryRows, error) {
	h, err := srv.inventorySpec(ctx, in.ManifestID)
	if err != nil {
		return nil, err
	}
	var spec *kanade.ExplodeSpec
	for i := range h.Explode {
		if h.Explode[i].Field == in.Field {
			spec = &h.Explode[i]
		}
	}
	if spec == nil {
		return nil, huma.Error404NotFound(fmt.Sprintf("job %q has no explode spec of field %q", kanade.Clip(in.ManifestID), kanade.Clip(in.Field)))
	}
	filters, err := storage.ParseInventoryFilters(in.query, func(c string) bool { _, ok := spec.Column(c); return ok })
	if err != nil {
		return nil, srv.inventoryProblem(ctx, "search inventory", err)
	}
	limit, offset := paging(in.Limit, in.Offset, storage.InventorySearchDefaultLimit, storage.InventorySearchMaxLimit)
	rows, err := srv.cfg.DB.SearchInventory(ctx, in.ManifestID, spec, filters, limit, offset)
	if err != nil {
		return nil, srv.inventoryProblem(ctx, "search inventory", err)
	}
	return &inventoryRows{Body: rows}, nil
}

func (srv *Server) searchInventoryScalars(ctx context.Context, in *inventoryScalarsInput) (*inventoryRows, error) {
	h, err := srv.inventorySpec(ctx, in.ManifestID)
	if err != nil {
		return nil, err
	}
	fields := storage.ScalarFields(h.Display)
	filters, err := storage.ParseInventoryFilters(in.query, func(c string) bool {
		for _, f := range fields {
			if f.Field == c {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, srv.inventoryProblem(ctx, "search inventory scalars", err)
	}
	limit, offset := paging(in.Limit, in.Offset, storage.InventorySearchDefaultLimit, storage.InventorySearchMaxLimit)
	rows, err := srv.cfg.DB.SearchInventoryScalars(ctx, in.ManifestID, fields, filters, limit, offset)
	if err != nil {
		return nil, srv.inventoryProblem(ctx, "search inventory scalars", err)
	}
	return &inventoryRows{Body: rows}, nil
}

// checkInventoryTables refuses a job whose explode spec names a table of
// the backend's own schema, or a table another job declares with another
// primary key or column type: one derived table has one layout, and two
// jobs disagreeing would have the projector rebuild it at every report of
// either. (Sharing a table with the same layout is fine: rows are keyed by
// job.) The error is a *kanade.FieldError on inventory.explode[i].table
// through bad.
func (srv *Server) checkInventoryTables(ctx context.Context, m *kanade.Manifest, bad func(error) error) error {
	h, err := m.InventorySpec()
	if err != nil || h == nil || len(h.Explode) == 0 {
		return nil // Validate refused or accepted it already
	}
	refuse := func(i int, rule string) error {
		return bad(&kanade.FieldError{Field: fmt.Sprintf("inventory.explode[%d].table", i), Rule: rule, Excerpt: h.Explode[i].Table})
	}
	for i, s := range h.Explode {
		taken, err := srv.cfg.DB.InventoryTableTaken(ctx, s.Table)
		if err != nil {
			return srv.readsProblem(ctx, "check inventory table", "", err)
		}
		if taken {
			return refuse(i, "must not name a table of the backend's own schema")
		}
	}
	es, err := srv.entries(ctx, kanade.BucketJobs)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Key == m.ID {
			continue
		}
		other, err := kanade.ParseManifest(e.Key, e.Value)
		if err != nil {
			continue
		}
		oh, err := other.InventorySpec()
		if err != nil || oh == nil {
			continue
		}
		for i := range h.Explode {
			for j := range oh.Explode {
				if why := layoutConflict(&h.Explode[i], &oh.Explode[j]); why != "" {
					return refuse(i, fmt.Sprintf("is also the table of job %q, which %s; one derived table has one layout", kanade.Clip(e.Key), why))
				}
			}
		}
	}
	return nil
}

// layoutConflict says how two specs naming one table disagree on its
// layout ("" when they do not, or name different tables).
func layoutConflict(a, b *kanade.ExplodeSpec) string {
	if !strings.EqualFold(a.Table, b.Table) {
		return ""
	}
	if len(a.PrimaryKey) != len(b.PrimaryKey) {
		return "has another primary key (" + strings.Join(b.PrimaryKey, ", ") + ")"
	}
	for i := range a.PrimaryKey {
		if !strings.EqualFold(a.PrimaryKey[i], b.PrimaryKey[i]) {
			return "has another primary key (" + strings.Join(b.PrimaryKey, ", ") + ")"
		}
	}
	for _, ca := range a.Columns {
		for _, cb := range b.Columns {
			if strings.EqualFold(ca.Field, cb.Field) && ca.Kind() != cb.Kind() {
				return fmt.Sprintf("declares column %s as %s", cb.Field, cb.Kind())
			}
		}
	}
	return ""
}
