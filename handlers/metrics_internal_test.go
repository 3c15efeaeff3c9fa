package handlers

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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

// The recorder must forward at most one final WriteHeader. huma sets a
// second status (499) after a marshal fails on a disconnected client, and a
// handler may write its body before calling WriteHeader; net/http logs every
// such call as "superfluous response.WriteHeader", which an abusive client
// could turn into a log flood. The server's ErrorLog must stay silent, the
// client must get the first status, and the metric must record it.
func TestInstrumentForwardsOneWriteHeader(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		wantCode int
	}{
		{
			name: "a body and then WriteHeader",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Write([]byte("partial"))
				w.WriteHeader(http.StatusInternalServerError)
			},
			wantCode: http.StatusOK,
		},
		{
			name: "WriteHeader twice, as huma does after a canceled marshal",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
				w.Write([]byte("{"))
				w.WriteHeader(499)
			},
			wantCode: http.StatusOK,
		},
		{
			name: "an informational status before the final one",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusEarlyHints)
				w.WriteHeader(http.StatusAccepted)
				w.WriteHeader(http.StatusConflict)
			},
			wantCode: http.StatusAccepted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.Handle("GET /x", tt.handler)
			reg := prometheus.NewRegistry()
			h, err := instrument(reg, mux)
			if err != nil {
				t.Fatal(err)
			}
			var logged bytes.Buffer
			srv := httptest.NewUnstartedServer(h)
			srv.Config.ErrorLog = log.New(&logged, "", 0)
			srv.Start()
			defer srv.Close()

			res, err := srv.Client().Get(srv.URL + "/x")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			srv.Close() // waits for the handler, so the log is complete
			if res.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", res.StatusCode, tt.wantCode)
			}
			if logged.Len() > 0 {
				t.Errorf("server error log: %s", logged.String())
			}
			want := fmt.Sprintf(`kanade_http_request_duration_seconds_count{code="%d",method="GET",route="/x"} 1`, tt.wantCode)
			if got := histogramCounts(t, reg); !slices.Contains(got, want) {
				t.Errorf("metrics %q, want %q", got, want)
			}
		})
	}
}

// histogramCounts renders the request counts of reg as exposition lines.
func histogramCounts(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out = append(out, fmt.Sprintf("%s_count{%s} %d", mf.GetName(), strings.Join(labels, ","), m.GetHistogram().GetSampleCount()))
		}
	}
	return out
}
