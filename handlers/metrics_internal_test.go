package handlers

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A streaming handler behind instrument must still reach Flush, through the
// http.Flusher assertion and through http.ResponseController.
func TestInstrumentKeepsFlushing(t *testing.T) {
	for name, flush := range map[string]func(w http.ResponseWriter) error{
		"Flusher":            func(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil },
		"ResponseController": func(w http.ResponseWriter) error { return http.NewResponseController(w).Flush() },
	} {
		t.Run(name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /stream", func(w http.ResponseWriter, _ *http.Request) {
				if err := flush(w); err != nil {
					t.Error(err)
				}
			})
			h, err := instrument(prometheus.NewRegistry(), mux)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stream", nil))
			if !rec.Flushed {
				t.Fatal("not flushed")
			}
		})
	}
}
