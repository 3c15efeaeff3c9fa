package handlers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
			h := instrument(&observed{}, mux)
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
			seen := &observed{}
			h := instrument(seen, mux)
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
			want := []string{fmt.Sprintf("GET /x %d", tt.wantCode)}
			if diff := cmp.Diff(want, seen.requests()); diff != "" {
				t.Errorf("observed (-want +got):\n%s", diff)
			}
		})
	}
}

// observed is a Metrics that remembers the requests it was told of, as
// "METHOD route code".
type observed struct {
	mu   sync.Mutex
	seen []string
}

func (o *observed) ObserveRequest(method, route, code string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, method+" "+route+" "+code)
}

func (o *observed) Handler(func() []GaugeFamily) (http.Handler, error) {
	return nil, errors.New("observed serves no /metrics")
}

func (o *observed) requests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

// The text format without a Metrics is what a scraper parses: escapes in
// help and label values, integers without an exponent, empty families left
// out.
func TestTextMetrics(t *testing.T) {
	h := textMetrics(func() []GaugeFamily {
		return []GaugeFamily{
			{Name: "a", Help: "back\\slash and\nnewline", Label: "l", Samples: []GaugeSample{{`q"uote\`, 1e6}, {"x", 0.25}}},
			{Name: "absent", Help: "no samples"},
			{Name: "b", Help: "plain", Samples: []GaugeSample{{Value: 3}}},
		}
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	want := `# HELP a back\\slash and\nnewline
# TYPE a gauge
a{l="q\"uote\\"} 1e+06
a{l="x"} 0.25
# HELP b plain
# TYPE b gauge
b 3
`
	if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8; escaping=underscores" {
		t.Errorf("Content-Type %q", ct)
	}
}
