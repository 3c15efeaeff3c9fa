package handlers_test

import (
	"testing"
	"time"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/storage/storagetest"
)

// BenchmarkNew is the route setup a Lambda cold start pays once: every
// operation registered with huma, the OpenAPI document, the role table
// checked against the mux, and the middleware.
func BenchmarkNew(b *testing.B) {
	db := storagetest.Open(b, nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		if _, err := handlers.New(handlers.Config{DB: db, Clock: func() time.Time { return now },
			Auth: auth.Config{StaticToken: testToken}}); err != nil {
			b.Fatal(err)
		}
	}
}
