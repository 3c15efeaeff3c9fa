package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// The fleet freeze (control.md §6): KV fleet_config["freeze"] holds a
// Freeze while automation is stopped; thawing deletes the key. The
// scheduler follows the key; these routes read and write it.

type freezeOutput struct {
	Body jsonValue
}

type freezeInput struct {
	ContentType string `header:"Content-Type" doc:"application/json"`
	RawBody     []byte `doc:"A Freeze: {\"from\":\"2026-12-20\",\"until\":\"2027-01-05\",\"reason\":\"year-end freeze\",\"tz\":\"local|utc\"}; every field optional ({} freezes until deleted); from and until are YYYY-MM-DD (midnight in tz) or RFC 3339; until is exclusive."`
}

func (srv *Server) registerFreeze(api huma.API) {
	register(api, huma.Operation{OperationID: "get-freeze", Method: http.MethodGet, Path: "/api/freeze",
		Summary: "The fleet freeze", Tags: []string{"control"},
		Description: "The stored Freeze, or null when none is set. A stored value that does not decode answers 500 " +
			"(the scheduler treats it as frozen), never null: doubt is not reported as \"not frozen\"."},
		func(ctx context.Context, _ *struct{}) (*freezeOutput, error) {
			return srv.getFreeze(ctx)
		})
	register(api, huma.Operation{OperationID: "set-freeze", Method: http.MethodPut, Path: "/api/freeze",
		Summary: "Freeze automation", Tags: []string{"control"},
		Description: "Stores the Freeze (scheduled firings and reconciles are skipped while it is active; operator exec, run, " +
			"kill and revoke are not affected) and answers it as stored. 400 when a bound does not parse or from is not before until."},
		func(ctx context.Context, in *freezeInput) (*freezeOutput, error) {
			return srv.setFreeze(ctx, in)
		})
	register(api, huma.Operation{OperationID: "clear-freeze", Method: http.MethodDelete, Path: "/api/freeze",
		Summary: "Thaw automation", Tags: []string{"control"}, DefaultStatus: http.StatusNoContent,
		Description: "Deletes the freeze (none set is fine)."},
		func(ctx context.Context, _ *struct{}) (*struct{}, error) {
			return nil, srv.clearFreeze(ctx)
		})
}

func (srv *Server) getFreeze(ctx context.Context) (*freezeOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	e, err := srv.get(ctx, kanade.BucketFleetConfig, kanade.KeyFreeze)
	if errors.Is(err, errNoSuchKey) {
		return &freezeOutput{}, nil // null
	}
	if err != nil {
		return nil, err
	}
	if _, err := kanade.DecodeFreeze(e.Value); err != nil {
		srv.cfg.Logger.ErrorContext(ctx, "the stored freeze does not decode", "error", err)
		return nil, huma.Error500InternalServerError("the stored freeze does not decode (the scheduler treats the fleet as frozen): " +
			err.Error() + "; PUT a valid one or DELETE it")
	}
	return &freezeOutput{Body: e.Value}, nil
}

func (srv *Server) setFreeze(ctx context.Context, in *freezeInput) (*freezeOutput, error) {
	if err := requireJSON(in.ContentType); err != nil {
		return nil, err
	}
	f, err := kanade.DecodeFreeze(in.RawBody)
	if err != nil {
		// The field's own words; the sentinel speaks of a stored value.
		var fe *kanade.FieldError
		if errors.As(err, &fe) {
			err = fe
		}
		return nil, bodyProblem("invalid freeze: ", err)
	}
	value, err := json.Marshal(f)
	if err != nil {
		return nil, huma.Error500InternalServerError("encode the freeze: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return nil, err
	}
	if _, err := c.Put(ctx, kanade.BucketFleetConfig, kanade.KeyFreeze, value); err != nil {
		return nil, srv.natsProblem(ctx, "put the freeze", err)
	}
	srv.audit(ctx, "freeze_set", kanade.KeyFreeze, map[string]any{"from": f.From, "until": f.Until, "reason": f.Reason})
	return &freezeOutput{Body: value}, nil
}

func (srv *Server) clearFreeze(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	c, err := srv.bus()
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, kanade.BucketFleetConfig, kanade.KeyFreeze, 0); err != nil {
		return srv.natsProblem(ctx, "delete the freeze", err)
	}
	srv.audit(ctx, "freeze_clear", kanade.KeyFreeze, nil)
	return nil
}
