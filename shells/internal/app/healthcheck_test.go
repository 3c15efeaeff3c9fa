package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheckProbesTheConfiguredAddress(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !ready {
			http.Error(w, `{"status":"not_ready"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok " + r.URL.Path))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for _, tt := range []struct {
		name    string
		shell   Shell
		env     map[string]string
		args    []string
		wantErr string
		wantOut string
	}{
		{"HTTP shell, default path, unspecified host", ShellHTTP, map[string]string{"KANADE_HTTP_ADDR": "0.0.0.0:" + port},
			[]string{"kanade-http", "healthcheck"}, "", "ok /healthz"},
		{"worker reads its admin address", ShellWorker, map[string]string{"KANADE_ADMIN_ADDR": ":" + port},
			[]string{"kanade-worker", "healthcheck", "/readyz"}, "", "ok /readyz"},
		{"not ready is a failure", ShellHTTP, map[string]string{"KANADE_HTTP_ADDR": "127.0.0.1:" + port},
			[]string{"kanade-http", "healthcheck", "/readyz"}, "503", "not_ready"},
		{"a whole URL", ShellHTTP, nil, []string{"kanade-http", "healthcheck", srv.URL + "/x"}, "", "ok /x"},
		{"nothing listening", ShellHTTP, map[string]string{"KANADE_HTTP_ADDR": "127.0.0.1:1"},
			[]string{"kanade-http", "healthcheck"}, "connect", ""},
		{"a bad target", ShellHTTP, nil, []string{"kanade-http", "healthcheck", "readyz"}, "want a path", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready = !strings.Contains(tt.name, "not ready")
			var out strings.Builder
			err := Healthcheck(context.Background(), tt.shell, tt.args, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, &out)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q, want %q in it", out.String(), tt.wantOut)
			}
		})
	}
}
