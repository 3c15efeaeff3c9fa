package handlers

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// GET /api/command-signing (control.md §7, upstream #1260): which key this
// backend signs commands with, so an operator can compare it with the
// kid:fingerprint every agent reports in its heartbeat's command_keys.
// Not signing is a normal state and answers 200 with nulls.

type signingBody struct {
	Kid         *string `json:"kid" nullable:"true" doc:"The key id in every command's Kanade-Sig-Kid header; null when commands go out unsigned."`
	Fingerprint *string `json:"fingerprint" nullable:"true" doc:"First 8 bytes of SHA-256 over the raw 32-byte public key, lower-case hex; null when commands go out unsigned."`
}

type signingOutput struct {
	Body signingBody
}

func (srv *Server) registerSigning(api huma.API) {
	register(api, huma.Operation{OperationID: "get-command-signing", Method: http.MethodGet, Path: "/api/command-signing",
		Summary: "The key commands are signed with", Tags: []string{"control"},
		Description: "The kid and fingerprint of the Ed25519 key every published command is signed with " +
			"(KANADE_COMMAND_SIGNING_KEY / _KID), or both null when commands are published unsigned."},
		func(context.Context, *struct{}) (*signingOutput, error) {
			id := srv.cfg.CommandSigning
			if !id.Signing() {
				return &signingOutput{}, nil
			}
			return &signingOutput{Body: signingBody{Kid: &id.Kid, Fingerprint: &id.Fingerprint}}, nil
		})
}
