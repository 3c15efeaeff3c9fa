package handlers

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// The agent lifecycle routes of fleet.md §3: removing an agent from the
// roster by hand (§3.2) and the version rollup (§3.3). The prune (§3.4) and
// the online/offline events (§3.5) are the worker's (projection).

// rulePCID is fleet.md §0.4's pc_id rule, as a 400 names it.
const rulePCID = "must be 1–128 bytes of [A-Za-z0-9_=/-] (no '.')"

// checkPCID answers 400 for a pc_id that could not be a subject token or
// KV key (fleet.md §0.4), before any side effect.
func checkPCID(pcID string) error {
	if !kanade.ValidPCID(pcID) {
		return badToken("pc_id", pcID, rulePCID)
	}
	return nil
}

type agentPathInput struct {
	PCID string `path:"pc_id" doc:"The PC: 1–128 bytes of [A-Za-z0-9_=/-]."`
}

type agentVersionsOutput struct {
	Body []kanade.AgentVersionCount `nullable:"false"`
}

func (srv *Server) registerAgents(api huma.API) {
	register(api, huma.Operation{OperationID: "delete-agent", Method: http.MethodDelete, Path: "/api/agents/{pc_id}",
		Summary: "Remove an agent from the roster", Tags: []string{"agents"}, DefaultStatus: http.StatusNoContent,
		Description: "Deletes the agents row (204 whether or not there was one) and audits agent_delete when a row went. " +
			"Nothing else changes: the PC's groups and config stay in KV, and a live agent reappears with its next heartbeat. " +
			"400 for a pc_id that is not [A-Za-z0-9_=/-]{1,128}."},
		func(ctx context.Context, in *agentPathInput) (*struct{}, error) {
			return nil, srv.deleteAgent(ctx, in.PCID)
		})
	register(api, huma.Operation{OperationID: "agent-versions", Method: http.MethodGet, Path: "/api/agents/versions",
		Summary: "Agents per version", Tags: []string{"agents"},
		Description: "One bucket per distinct agent_version (null for agents that never reported one) with its total and " +
			"active agents (last heartbeat within the stale threshold), sorted by total descending, then version ascending, null first."},
		func(ctx context.Context, _ *struct{}) (*agentVersionsOutput, error) {
			vs, err := srv.cfg.DB.AgentVersions(ctx, srv.cfg.Clock().Add(-srv.cfg.StaleThreshold))
			if err != nil {
				return nil, srv.dbProblem(ctx, "count agents per version", err)
			}
			return &agentVersionsOutput{Body: vs}, nil
		})
}

func (srv *Server) deleteAgent(ctx context.Context, pcID string) error {
	if err := checkPCID(pcID); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	gone, err := srv.cfg.DB.DeleteAgent(ctx, pcID)
	if err != nil {
		return srv.dbProblem(ctx, "delete agent", err)
	}
	if gone {
		srv.audit(ctx, actionAgentDelete, pcID, nil)
	}
	return nil
}

// actionAgentDelete is the audit action of DELETE /api/agents/{pc_id}.
const actionAgentDelete = "agent_delete"
