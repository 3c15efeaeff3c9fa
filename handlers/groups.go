package handlers

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/storage"
)

// Group memberships (fleet.md §1): KV agent_groups holds each PC's groups,
// which agents watch to subscribe to commands.group.<g> and to apply the
// groups' config scopes. The per-PC routes read and edit that KV directly,
// edits by compare-and-swap (§1.6), and write their result through to the
// SQL mirror; GET /api/groups reads the mirror (storage/groups.go), which
// the worker keeps (package groupmirror), once it has made sure the mirror
// holds everything the KV does.

// Audit actions of the membership edits (fleet.md §0.6; our names).
const (
	actionGroupsPut   = "agent_groups_put"
	actionGroupAdd    = "agent_group_add"
	actionGroupRemove = "agent_group_remove"
)

// groupsTimeout bounds GET /api/groups, which may have to read the whole
// bucket when the mirror is behind.
const groupsTimeout = 30 * time.Second

// mirrorWait is how long GET /api/groups waits for the worker to apply a
// change the mirror has not seen yet before reading the KV itself: a
// change made a moment ago by something other than this API (the CLI, an
// older backend) is in the mirror within milliseconds while a worker runs.
const mirrorWait = 500 * time.Millisecond

type agentGroupsBody struct {
	Groups []string `json:"groups" doc:"The PC's groups, sorted bytewise, without duplicates; [] for none." example:"[\"canary\",\"wave1\"]"`
}

type agentGroupsOutput struct {
	Body agentGroupsBody
}

type pcInput struct {
	PCID string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
}

type putGroupsInput struct {
	PCID        string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
	ContentType string `header:"Content-Type"`
	RawBody     []byte
}

// putGroupsRequest is the body of PUT /api/agents/{pc_id}/groups.
type putGroupsRequest struct {
	Groups *[]string `json:"groups" required:"true" doc:"The PC's new groups, in any order, duplicates allowed. Each 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters." example:"[\"wave1\",\"canary\",\"wave1\"]"`
}

type addGroupInput struct {
	PCID        string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
	ContentType string `header:"Content-Type"`
	RawBody     []byte
}

// addGroupRequest is the body of POST /api/agents/{pc_id}/groups.
type addGroupRequest struct {
	Group *string `json:"group" required:"true" doc:"The group to add: 1–128 bytes of UTF-8 without '.', '*', '>', whitespace or control characters." example:"canary"`
}

type removeGroupInput struct {
	PCID  string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]." example:"PC-0123"`
	Group string `path:"group" doc:"The group to remove, URL-encoded; any text (a name stored by other means can be removed too)." example:"canary"`
}

type groupRow struct {
	Name      string   `json:"name" doc:"The group."`
	Members   []string `json:"members" doc:"Its member PCs, sorted bytewise; [] for a group that only has a config scope."`
	HasConfig bool     `json:"has_config" doc:"Whether KV agent_config holds a scope groups.<name>."`
	Alive     int64    `json:"alive" doc:"How many members have an agent whose last heartbeat is within the stale threshold (not in upstream; old clients ignore it)."`
}

type groupsBody struct {
	Groups []groupRow `json:"groups" doc:"One row per group that has members or a config scope, sorted by name."`
}

type groupsOutput struct {
	Body groupsBody
}

func (srv *Server) registerGroups(api huma.API) {
	const one = "/api/agents/{pc_id}/groups"
	register(api, huma.Operation{OperationID: "get-agent-groups", Method: http.MethodGet, Path: one,
		Summary: "A PC's groups", Tags: []string{"groups"},
		Description: "The PC's groups as stored in KV agent_groups (normalised), or {\"groups\":[]} when it has none. " +
			"An unknown PC is not an error. 400 for a pc_id that cannot be a KV key; 500 when the stored value does not decode; " +
			"503 when the bucket cannot be opened."},
		func(ctx context.Context, in *pcInput) (*agentGroupsOutput, error) {
			return srv.getAgentGroups(ctx, in.PCID)
		})
	register(api, huma.Operation{OperationID: "put-agent-groups", Method: http.MethodPut, Path: one,
		Summary: "Replace a PC's groups", Tags: []string{"groups"},
		Description: "Sorts and de-duplicates the list, checks every name (400 naming groups[i]), stores it (nothing is written " +
			"when the stored value is already this one, so agents are not woken) and answers it as stored. {\"groups\":[]} " +
			"stores an empty list. Publishes the audit event agent_groups_put."},
		func(ctx context.Context, in *putGroupsInput) (*agentGroupsOutput, error) {
			return srv.putAgentGroups(ctx, in)
		})
	documentJSONBody[putGroupsRequest](api, http.MethodPut, one, `{"groups": ["wave1", "canary"]}`)
	register(api, huma.Operation{OperationID: "add-agent-group", Method: http.MethodPost, Path: one,
		Summary: "Add a PC to a group", Tags: []string{"groups"},
		Description: "Adds one group by compare-and-swap (a concurrent edit of the same PC is never lost) and answers the " +
			"resulting list. Adding a group the PC is already in writes nothing. 400 for a name that cannot be a subject token; " +
			"500 when the stored value does not decode. Publishes the audit event agent_group_add."},
		func(ctx context.Context, in *addGroupInput) (*agentGroupsOutput, error) {
			return srv.addAgentGroup(ctx, in)
		})
	documentJSONBody[addGroupRequest](api, http.MethodPost, one, `{"group": "canary"}`)
	register(api, huma.Operation{OperationID: "remove-agent-group", Method: http.MethodDelete, Path: one + "/{group}",
		Summary: "Remove a PC from a group", Tags: []string{"groups"},
		Description: "Removes one group by compare-and-swap and answers the resulting list (possibly {\"groups\":[]}); " +
			"removing a group the PC is not in, or from a PC with no groups, writes nothing and is not an error. " +
			"Publishes the audit event agent_group_remove."},
		func(ctx context.Context, in *removeGroupInput) (*agentGroupsOutput, error) {
			return srv.removeAgentGroup(ctx, in)
		})
	register(api, huma.Operation{OperationID: "list-groups", Method: http.MethodGet, Path: "/api/groups",
		Summary: "Every group with its members", Tags: []string{"groups"},
		Description: "Inverts the memberships of KV agent_groups into one row per group, adds every group that has a config " +
			"scope in KV agent_config (has_config, possibly without members), and counts each group's alive members. " +
			"Rows and members are sorted bytewise; no pagination. Read from the SQL mirror the worker keeps of the bucket, " +
			"once it holds every revision the bucket has (else from the bucket itself, catching the mirror up). " +
			"A membership value that does not decode is skipped. 503 when agent_groups cannot be opened; a missing " +
			"agent_config only leaves has_config false."},
		func(ctx context.Context, _ *struct{}) (*groupsOutput, error) { return srv.listGroups(ctx) })
	for _, p := range []struct{ method, path string }{{http.MethodGet, one}, {http.MethodPut, one}, {http.MethodPost, one},
		{http.MethodDelete, one + "/{group}"}} {
		documentResponses(api, p.method, p.path, map[string]string{
			"400": "The pc_id cannot be a KV key, or a group name is invalid.",
			"500": "The stored value does not decode, or KV failed.",
			"503": "NATS is unavailable or the bucket cannot be opened.",
		})
	}
	documentResponses(api, http.MethodGet, "/api/groups", map[string]string{
		"500": "KV or the database failed.",
		"503": "NATS is unavailable or agent_groups cannot be opened.",
	})
}

// groupsOf decodes a stored membership value for an answer: 500 when it
// does not decode.
func (srv *Server) groupsOf(ctx context.Context, pc string, value []byte) (*agentGroupsOutput, error) {
	gs, err := kanade.DecodeAgentGroups(value)
	if err != nil {
		srv.cfg.Logger.ErrorContext(ctx, "stored agent groups do not decode", slog.String("pc_id", pc), slog.Any("error", err))
		return nil, huma.Error500InternalServerError("the stored groups of " + pc + " do not decode: " + err.Error() +
			"; PUT a new list to replace them")
	}
	return &agentGroupsOutput{Body: agentGroupsBody{Groups: gs}}, nil
}

func (srv *Server) getAgentGroups(ctx context.Context, pc string) (*agentGroupsOutput, error) {
	if err := checkPCID(pc); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	e, err := c.Get(ctx, kanade.BucketAgentGroups, pc)
	switch {
	case errors.Is(err, bus.ErrNotFound) && !isNoBucket(err):
		return &agentGroupsOutput{Body: agentGroupsBody{Groups: []string{}}}, nil
	case err != nil:
		return nil, srv.kvProblem(ctx, kanade.BucketAgentGroups, "read the groups of "+pc, err)
	}
	return srv.groupsOf(ctx, pc, e.Value)
}

// errUndecodable is a stored value an edit cannot start from.
var errUndecodable = errors.New("the stored value does not decode")

// editGroups changes pc's groups by compare-and-swap: edit gets the
// current groups (an undecodable value is an error unless replace, which
// never reads it) and returns the new ones. A change is written through
// to the mirror; the answer is the list as stored.
func (srv *Server) editGroups(ctx context.Context, pc string, replace bool, edit func([]string) []string) (*agentGroupsOutput, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, false, err
	}
	var decodeErr error
	e, changed, err := c.ModifyEntry(ctx, kanade.BucketAgentGroups, pc, func(cur []byte, _ bool) ([]byte, bool, error) {
		if replace {
			// Skipped only when the stored bytes are these (fleet.md §1.3).
			next := kanade.EncodeAgentGroups(edit(nil))
			return next, !bytes.Equal(next, cur), nil
		}
		var gs []string
		if gs, decodeErr = kanade.DecodeAgentGroups(cur); decodeErr != nil {
			return nil, false, errUndecodable
		}
		// Skipped when the set is unchanged (§1.4, §1.5), whatever else
		// the stored value holds.
		next := kanade.NormalizeGroups(edit(slices.Clone(gs)))
		return kanade.EncodeAgentGroups(next), !slices.Equal(next, gs), nil
	})
	if errors.Is(err, errUndecodable) {
		srv.cfg.Logger.ErrorContext(ctx, "stored agent groups do not decode", slog.String("pc_id", pc), slog.Any("error", decodeErr))
		return nil, false, huma.Error500InternalServerError("the stored groups of " + pc + " do not decode: " + decodeErr.Error() +
			"; PUT a new list to replace them")
	}
	if err != nil {
		return nil, false, srv.kvProblem(ctx, kanade.BucketAgentGroups, "edit the groups of "+pc, err)
	}
	out, err := srv.groupsOf(ctx, pc, e.Value)
	if err != nil {
		return nil, false, err
	}
	if changed {
		// The KV has the change; the mirror is a copy the worker also
		// keeps, so a failure here is logged, not answered.
		m := storage.Membership{PCID: pc, Groups: out.Body.Groups, Revision: e.Revision}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleetTimeout)
		defer cancel()
		if err := srv.cfg.DB.WriteGroups(wctx, m); err != nil {
			srv.cfg.Logger.WarnContext(ctx, "groups mirror write-through failed; the worker's watch will apply it",
				slog.String("pc_id", pc), slog.Any("error", err))
		}
	}
	return out, changed, nil
}

func (srv *Server) putAgentGroups(ctx context.Context, in *putGroupsInput) (*agentGroupsOutput, error) {
	if err := checkPCID(in.PCID); err != nil {
		return nil, err
	}
	var req putGroupsRequest
	if err := readObject(in.ContentType, in.RawBody, &req); err != nil {
		return nil, err
	}
	if req.Groups == nil {
		return nil, unprocessable("groups", "is required (an array of group names)")
	}
	if err := kanade.CheckGroups(*req.Groups); err != nil {
		return nil, invalidValue(err)
	}
	groups := kanade.NormalizeGroups(*req.Groups)
	out, changed, err := srv.editGroups(ctx, in.PCID, true, func([]string) []string { return groups })
	if err != nil {
		return nil, err
	}
	srv.audit(ctx, actionGroupsPut, in.PCID, map[string]any{"groups": out.Body.Groups, "changed": changed})
	return out, nil
}

func (srv *Server) addAgentGroup(ctx context.Context, in *addGroupInput) (*agentGroupsOutput, error) {
	if err := checkPCID(in.PCID); err != nil {
		return nil, err
	}
	var req addGroupRequest
	if err := readObject(in.ContentType, in.RawBody, &req); err != nil {
		return nil, err
	}
	if req.Group == nil {
		return nil, unprocessable("group", "is required (a group name)")
	}
	g := *req.Group
	if err := kanade.CheckGroups([]string{g}); err != nil {
		return nil, invalidValue(&kanade.FieldError{Field: "group", Rule: "must be a group name: 1–128 bytes of UTF-8 without " +
			"'.', '*', '>', whitespace or control characters", Excerpt: kanade.Clip(g)})
	}
	out, changed, err := srv.editGroups(ctx, in.PCID, false, func(gs []string) []string {
		if slices.Contains(gs, g) {
			return gs
		}
		return append(gs, g)
	})
	if err != nil {
		return nil, err
	}
	srv.audit(ctx, actionGroupAdd, in.PCID, map[string]any{"group": g, "changed": changed})
	return out, nil
}

func (srv *Server) removeAgentGroup(ctx context.Context, in *removeGroupInput) (*agentGroupsOutput, error) {
	if err := checkPCID(in.PCID); err != nil {
		return nil, err
	}
	out, changed, err := srv.editGroups(ctx, in.PCID, false, func(gs []string) []string {
		return slices.DeleteFunc(gs, func(x string) bool { return x == in.Group })
	})
	if err != nil {
		return nil, err
	}
	srv.audit(ctx, actionGroupRemove, in.PCID, map[string]any{"group": in.Group, "changed": changed})
	return out, nil
}

func (srv *Server) listGroups(ctx context.Context) (*groupsOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, groupsTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	st, err := c.KVState(ctx, kanade.BucketAgentGroups)
	if err != nil {
		return nil, srv.kvProblem(ctx, kanade.BucketAgentGroups, "read the state of KV agent_groups", err)
	}
	configured, err := srv.configuredGroups(ctx, c)
	if err != nil {
		return nil, err
	}
	groups, err := srv.groupMembers(ctx, c, st)
	if err != nil {
		return nil, err
	}
	rows := make([]groupRow, 0, len(groups)+len(configured))
	for _, g := range groups {
		rows = append(rows, groupRow{Name: g.Name, Members: g.Members, Alive: g.Alive, HasConfig: configured[g.Name]})
		delete(configured, g.Name)
	}
	for name := range configured {
		rows = append(rows, groupRow{Name: name, Members: []string{}, HasConfig: true})
	}
	slices.SortFunc(rows, func(a, b groupRow) int { return strings.Compare(a.Name, b.Name) })
	return &groupsOutput{Body: groupsBody{Groups: rows}}, nil
}

// configuredGroups are the groups that have a config scope (keys
// groups.<name> of KV agent_config). A bucket that cannot be opened means
// none (fleet.md §1.7).
func (srv *Server) configuredGroups(ctx context.Context, c *bus.Client) (map[string]bool, error) {
	es, err := c.Matching(ctx, kanade.BucketAgentConfig, kanade.GroupScopeKey(">"))
	if isNoBucket(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, srv.kvProblem(ctx, kanade.BucketAgentConfig, "list the group scopes", err)
	}
	out := make(map[string]bool, len(es))
	for _, e := range es {
		if kind, name, ok := kanade.ParseScopeKey(e.Key); ok && kind == kanade.ScopeGroup {
			out[name] = true
		}
	}
	return out, nil
}

// groupMembers reads every group's members and alive count from the
// mirror once it holds everything the bucket held at st: right away
// normally, after a short wait for the worker when a change is on its way,
// and otherwise after catching the mirror up from the bucket itself (no
// worker running, or one far behind).
func (srv *Server) groupMembers(ctx context.Context, c *bus.Client, st bus.KVState) ([]storage.GroupMembers, error) {
	alive := srv.cfg.Clock().Add(-srv.cfg.StaleThreshold)
	deadline := time.Now().Add(mirrorWait)
	for {
		m, err := srv.cfg.DB.GroupsMirror(ctx)
		if err != nil {
			return nil, srv.dbProblem(ctx, "read the groups mirror", err)
		}
		if m.Current(st.Created, st.Revision) {
			break
		}
		if time.Now().After(deadline) {
			if err := srv.catchUpGroups(ctx, c); err != nil {
				return nil, err
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil, huma.Error503ServiceUnavailable("waiting for the groups mirror: " + ctx.Err().Error())
		case <-time.After(10 * time.Millisecond):
		}
	}
	gs, err := srv.cfg.DB.GroupOverview(ctx, alive)
	if err != nil {
		return nil, srv.dbProblem(ctx, "read the group overview", err)
	}
	return gs, nil
}

// catchUpGroups brings the mirror up to a snapshot of the bucket, as the
// worker's watch does when it starts; a value that does not decode counts
// as no groups and is logged.
func (srv *Server) catchUpGroups(ctx context.Context, c *bus.Client) error {
	srv.cfg.Logger.WarnContext(ctx, "groups mirror behind KV agent_groups; catching it up from the bucket (is the worker running?)")
	snap, err := c.Snapshot(ctx, kanade.BucketAgentGroups)
	if err != nil {
		return srv.kvProblem(ctx, kanade.BucketAgentGroups, "read KV agent_groups", err)
	}
	keys := make([]storage.Membership, 0, len(snap.Entries))
	through := snap.State.Revision
	for _, e := range snap.Entries {
		m := storage.Membership{PCID: e.Key, Revision: e.Revision}
		through = max(through, e.Revision)
		if !e.Deleted {
			gs, err := kanade.DecodeAgentGroups(e.Value)
			if err != nil {
				srv.cfg.Logger.WarnContext(ctx, "membership value does not decode; skipped",
					slog.String("pc_id", kanade.Clip(e.Key)), slog.Any("error", err))
			}
			m.Groups = gs
		}
		keys = append(keys, m)
	}
	if err := srv.cfg.DB.SyncGroups(ctx, snap.State.Created, through, keys); err != nil {
		return srv.dbProblem(ctx, "catch up the groups mirror", err)
	}
	return nil
}
