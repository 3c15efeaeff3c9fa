package onprem

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kanade-fleet/backend/shells/internal/app"
)

func TestAServiceGetsADataFolderUnlessItsFlagsNameOne(t *testing.T) {
	def := defaultServiceDataDir(`D:\Data`, "kanade")
	if want := filepath.Join(`D:\Data`, "kanade"); def != want {
		t.Fatalf("default %q, want %q", def, want)
	}
	for _, tt := range []struct {
		args, want []string
	}{
		{nil, []string{"-data-dir", def}},
		{[]string{"-addr", "0.0.0.0:8080"}, []string{"-data-dir", def, "-addr", "0.0.0.0:8080"}},
		{[]string{"-data-dir", `E:\k`}, []string{"-data-dir", `E:\k`}},
		{[]string{"--data-dir=E:\\k"}, []string{"--data-dir=E:\\k"}},
		{[]string{"-db", "x", "-data-dir=E:\\k"}, []string{"-db", "x", "-data-dir=E:\\k"}},
	} {
		got := withDataDir(tt.args, def)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("withDataDir(%q) (-want +got):\n%s", tt.args, diff)
		}
		if v := flagValue(got, "data-dir"); v == "" || strings.HasPrefix(v, "-") {
			t.Errorf("flagValue(%q, data-dir) = %q", got, v)
		}
	}
}

func TestEachLogLineGoesToTheEventLogWithItsSeverity(t *testing.T) {
	type entry struct {
		Sev Severity
		Msg string
	}
	var got []entry
	w := lineWriter{sink: func(sev Severity, msg string) error { got = append(got, entry{sev, msg}); return nil }}
	w.Write([]byte("time=2026-01-01T00:00:00Z level=INFO msg=serving server=http\n"))
	w.Write([]byte("time=2026-01-01T00:00:00Z level=WARN msg=\"NATS is not reachable yet\"\n"))
	w.Write([]byte(`{"time":"2026-01-01T00:00:00Z","level":"ERROR","msg":"shutdown incomplete"}` + "\n"))
	w.Write([]byte("kanade: listening on http://127.0.0.1:8080/\r\nkanade: dashboard http://127.0.0.1:8080/\n\n"))
	want := []entry{
		{SeverityInfo, "time=2026-01-01T00:00:00Z level=INFO msg=serving server=http"},
		{SeverityWarning, `time=2026-01-01T00:00:00Z level=WARN msg="NATS is not reachable yet"`},
		{SeverityError, `{"time":"2026-01-01T00:00:00Z","level":"ERROR","msg":"shutdown incomplete"}`},
		{SeverityInfo, "kanade: listening on http://127.0.0.1:8080/"},
		{SeverityInfo, "kanade: dashboard http://127.0.0.1:8080/"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	failing := lineWriter{sink: func(Severity, string) error { return errors.New("event log full") }}
	if _, err := failing.Write([]byte("x\n")); err == nil {
		t.Error("a failing event log went unreported")
	}
}

func TestTheServiceSubcommandSaysWhereItWorks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows the subcommand talks to the service manager")
	}
	run := Run(app.ShellHTTP, "kanade-http", nil)
	err := run(t.Context(), []string{"kanade-http", "service", "install"}, func(string) (string, bool) { return "", false }, nil, nil)
	if IsService([]string{"kanade-http", "service"}) != true || err == nil {
		t.Fatalf("service subcommand: %v", err)
	}
	if s := ServiceOf(app.ShellWorker); s.Name != "kanade-worker" || ServiceOf(app.ShellHTTP).Name != "kanade" {
		t.Errorf("service names %q, %q", s.Name, ServiceOf(app.ShellHTTP).Name)
	}
}
