package app

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseDefaultsOfTheHTTPShell(t *testing.T) {
	got, err := Parse(ShellHTTP, []string{"kanade-http"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		HTTPAddr:           "127.0.0.1:8080",
		DataDir:            "./data",
		DB:                 filepath.Join("data", "kanade.db"),
		NATSListen:         "127.0.0.1:4222",
		NATSReplicas:       1,
		StaleThreshold:     2 * time.Minute,
		StaleDegradedRatio: 1.0,
		ProjectionStall:    2 * time.Minute,
		ProjectorMaxBytes:  64 << 20,
		Worker:             true,
		LogLevel:           slog.LevelInfo,
		LogFormat:          "text",
		BootstrapAdminUser: "admin",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		shell Shell
		env   map[string]string
		args  []string
		check func(t *testing.T, c Config)
	}{
		{
			name:  "variables set every field",
			shell: ShellHTTP,
			env: map[string]string{
				"KANADE_HTTP_ADDR": "0.0.0.0:80", "KANADE_DATA_DIR": "/var/lib/kanade", "KANADE_DB": "libsql://db.example:8080",
				"KANADE_DB_AUTH_TOKEN": "dbt", "KANADE_NATS_URL": "nats://n:4222", "KANADE_NATS_TOKEN": "nt",
				"KANADE_NATS_REPLICAS": "3", "KANADE_STALE_THRESHOLD": "90s", "KANADE_STALE_DEGRADED_RATIO": "0.000001",
				"KANADE_AUTH_STATIC_TOKEN": "st", "KANADE_JWT_SECRET": "js", "KANADE_WORKER": "off",
				"KANADE_LOG_LEVEL": "debug", "KANADE_LOG_FORMAT": "JSON", "KANADE_DEMO": "50",
				"KANADE_PROJECTION_STALL": "45s", "KANADE_PROJECTOR_MAX_BYTES": "256MiB", "KANADE_PROBE_MAX_AGE": "2s",
				"KANADE_BOOTSTRAP_ADMIN_USER": "root", "KANADE_BOOTSTRAP_ADMIN_PASSWORD": " pass word ",
			},
			check: func(t *testing.T, c Config) {
				want := Config{
					HTTPAddr: "0.0.0.0:80", DataDir: "/var/lib/kanade", DB: "libsql://db.example:8080", DBAuthToken: "dbt",
					NATSURL: "nats://n:4222", NATSListen: "127.0.0.1:4222", NATSToken: "nt", NATSReplicas: 3,
					StaleThreshold: 90 * time.Second, StaleDegradedRatio: 0.000001, AuthStaticToken: "st", JWTSecret: "js",
					LogLevel: slog.LevelDebug, LogFormat: "json", Demo: 50,
					ProjectionStall: 45 * time.Second, ProjectorMaxBytes: 256 << 20, ProbeMaxAge: 2 * time.Second,
					BootstrapAdminUser: "root", BootstrapAdminPassword: " pass word ", // a password is not trimmed
				}
				if diff := cmp.Diff(want, c); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "flags override variables",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_HTTP_ADDR": "127.0.0.1:1", "KANADE_WORKER": "off", "KANADE_DEMO": "3"},
			args:  []string{"-addr", "127.0.0.1:2", "-worker=on", "-demo", "0", "-data-dir", "/tmp/k"},
			check: func(t *testing.T, c Config) {
				got := []any{c.HTTPAddr, c.Worker, c.Demo, c.DB}
				want := []any{"127.0.0.1:2", true, 0, "/tmp/k/kanade.db"}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "prune days are clamped to 100 years, and a flag overrides the variable",
			shell: ShellWorker,
			env:   map[string]string{"KANADE_AGENT_PRUNE_DAYS": "999999"},
			check: func(t *testing.T, c Config) {
				if c.AgentPruneDays != 36500 {
					t.Errorf("AgentPruneDays = %d, want 36500", c.AgentPruneDays)
				}
				c2, err := Parse(ShellHTTP, []string{"kanade", "-agent-prune-days", "30"}, env(map[string]string{"KANADE_AGENT_PRUNE_DAYS": "7"}), io.Discard)
				if err != nil || c2.AgentPruneDays != 30 {
					t.Errorf("flag 30 over variable 7: %d, %v", c2.AgentPruneDays, err)
				}
			},
		},
		{
			name:  "an empty KANADE_AUTH_DISABLE still disables auth",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_AUTH_DISABLE": ""},
			check: func(t *testing.T, c Config) {
				if !c.AuthDisabled {
					t.Error("AuthDisabled = false")
				}
			},
		},
		{
			name:  "KANADE_AUTH_DISABLE=false is still presence",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_AUTH_DISABLE": "false"},
			check: func(t *testing.T, c Config) {
				if !c.AuthDisabled {
					t.Error("AuthDisabled = false")
				}
			},
		},
		{
			name:  "the -auth-disable=false flag overrides the variable",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_AUTH_DISABLE": "1"},
			args:  []string{"-auth-disable=false"},
			check: func(t *testing.T, c Config) {
				if c.AuthDisabled {
					t.Error("AuthDisabled = true")
				}
			},
		},
		{
			name:  "the bare -auth-disable flag disables auth",
			shell: ShellHTTP,
			args:  []string{"-auth-disable"},
			check: func(t *testing.T, c Config) {
				if !c.AuthDisabled {
					t.Error("AuthDisabled = false")
				}
			},
		},
		{
			name:  "no variable means auth on",
			shell: ShellHTTP,
			check: func(t *testing.T, c Config) {
				if c.AuthDisabled {
					t.Error("AuthDisabled = true")
				}
			},
		},
		{
			name:  "embedded NATS may pick a free port",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_NATS_LISTEN": "127.0.0.1:-1"},
			check: func(t *testing.T, c Config) {
				if c.NATSListen != "127.0.0.1:-1" {
					t.Errorf("NATSListen = %q", c.NATSListen)
				}
			},
		},
		{
			name:  "demo runs are job=duration pairs, spaces allowed, and the flag overrides the variable",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_DEMO_RUNS": "x=1s"},
			args:  []string{"-demo-runs", " long-scan = 10m ,ping=0s,sim-patch-scan=1h30m"},
			check: func(t *testing.T, c Config) {
				want := map[string]time.Duration{"long-scan": 10 * time.Minute, "ping": 0, "sim-patch-scan": 90 * time.Minute}
				if diff := cmp.Diff(want, c.DemoRuns); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "the worker shell reads demo runs too",
			shell: ShellWorker,
			env:   map[string]string{"KANADE_DEMO_RUNS": "long-scan=2m"},
			check: func(t *testing.T, c Config) {
				if diff := cmp.Diff(map[string]time.Duration{"long-scan": 2 * time.Minute}, c.DemoRuns); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "an empty KANADE_DEMO_RUNS is no demo runs",
			shell: ShellHTTP,
			env:   map[string]string{"KANADE_DEMO_RUNS": " "},
			check: func(t *testing.T, c Config) {
				if c.DemoRuns != nil {
					t.Errorf("DemoRuns = %v, want nil", c.DemoRuns)
				}
			},
		},
		{
			name:  "the worker shell has an admin address and no HTTP address",
			shell: ShellWorker,
			env:   map[string]string{"KANADE_HTTP_ADDR": "127.0.0.1:1"},
			check: func(t *testing.T, c Config) {
				got := []string{c.HTTPAddr, c.AdminAddr}
				if diff := cmp.Diff([]string{"", "127.0.0.1:9090"}, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "the worker shell has no accounts to bootstrap",
			shell: ShellWorker,
			env:   map[string]string{"KANADE_BOOTSTRAP_ADMIN_USER": "bad name", "KANADE_BOOTSTRAP_ADMIN_PASSWORD": "secret-password"},
			check: func(t *testing.T, c Config) {
				if c.BootstrapAdminUser != "" || c.BootstrapAdminPassword != "" {
					t.Errorf("worker bootstrap = %q, %q", c.BootstrapAdminUser, c.BootstrapAdminPassword)
				}
			},
		},
		{
			name:  "a bootstrap user is not checked while no password asks for it",
			shell: ShellLambda,
			env:   map[string]string{"KANADE_DB": "libsql://x", "KANADE_NATS_URL": "nats://n", "KANADE_JWT_SECRET": "j", "KANADE_BOOTSTRAP_ADMIN_USER": "bad name"},
			check: func(t *testing.T, c Config) {
				if c.BootstrapAdminPassword != "" {
					t.Error("a password appeared")
				}
			},
		},
		{
			name:  "Lambda reads only the environment and has no data folder",
			shell: ShellLambda,
			env:   map[string]string{"KANADE_DB": "libsql://x", "KANADE_NATS_URL": "nats://n", "KANADE_JWT_SECRET": "j", "KANADE_DATA_DIR": "/d"},
			check: func(t *testing.T, c Config) {
				got := []string{c.DB, c.DataDir}
				if diff := cmp.Diff([]string{"libsql://x", ""}, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.shell, append([]string{"kanade"}, tt.args...), env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name  string
		shell Shell
		env   map[string]string
		args  []string
		want  []string // substrings of the error
	}{
		{"a ratio above 1", ShellHTTP, map[string]string{"KANADE_STALE_DEGRADED_RATIO": "1.01"}, nil,
			[]string{"KANADE_STALE_DEGRADED_RATIO (-stale-degraded-ratio)", "(0, 1]"}},
		{"a ratio of 0", ShellHTTP, nil, []string{"-stale-degraded-ratio", "0"}, []string{"KANADE_STALE_DEGRADED_RATIO"}},
		{"a ratio that is not a number", ShellHTTP, map[string]string{"KANADE_STALE_DEGRADED_RATIO": "half"}, nil, []string{`"half"`}},
		{"a zero threshold", ShellHTTP, map[string]string{"KANADE_STALE_THRESHOLD": "0s"}, nil, []string{"KANADE_STALE_THRESHOLD", "positive duration"}},
		{"a negative threshold", ShellHTTP, map[string]string{"KANADE_STALE_THRESHOLD": "-1m"}, nil, []string{"KANADE_STALE_THRESHOLD"}},
		{"a threshold without unit", ShellHTTP, map[string]string{"KANADE_STALE_THRESHOLD": "120"}, nil, []string{"KANADE_STALE_THRESHOLD"}},
		{"worker yes", ShellHTTP, map[string]string{"KANADE_WORKER": "yes"}, nil, []string{"KANADE_WORKER", "on or off"}},
		{"zero replicas", ShellHTTP, map[string]string{"KANADE_NATS_REPLICAS": "0"}, nil, []string{"KANADE_NATS_REPLICAS"}},
		{"an address without port", ShellHTTP, map[string]string{"KANADE_HTTP_ADDR": "localhost"}, nil, []string{"KANADE_HTTP_ADDR"}},
		{"port -1 for HTTP", ShellHTTP, map[string]string{"KANADE_HTTP_ADDR": "127.0.0.1:-1"}, nil, []string{"KANADE_HTTP_ADDR"}},
		{"a log format", ShellHTTP, map[string]string{"KANADE_LOG_FORMAT": "xml"}, nil, []string{"KANADE_LOG_FORMAT"}},
		{"a log level", ShellHTTP, map[string]string{"KANADE_LOG_LEVEL": "loud"}, nil, []string{"KANADE_LOG_LEVEL"}},
		{"negative demo", ShellHTTP, map[string]string{"KANADE_DEMO": "-3"}, nil, []string{"KANADE_DEMO"}},
		{"demo runs without a duration", ShellHTTP, map[string]string{"KANADE_DEMO_RUNS": "long-scan"}, nil,
			[]string{"KANADE_DEMO_RUNS (-demo-runs)", "job=duration", `"long-scan"`}},
		{"demo runs with a negative duration", ShellWorker, nil, []string{"-demo-runs", "a=1m,b=-1s"}, []string{"KANADE_DEMO_RUNS", "job b", `"-1s"`}},
		{"demo runs with a duration without unit", ShellHTTP, map[string]string{"KANADE_DEMO_RUNS": "a=10"}, nil, []string{"KANADE_DEMO_RUNS", `"10"`}},
		{"demo runs naming a job twice", ShellHTTP, map[string]string{"KANADE_DEMO_RUNS": "a=1m, a=2m"}, nil, []string{"job a given twice"}},
		{"demo runs with an empty pair", ShellHTTP, map[string]string{"KANADE_DEMO_RUNS": "a=1m,,b=2m"}, nil, []string{"KANADE_DEMO_RUNS", `got ""`}},
		{"demo runs naming a job that is no KV key", ShellHTTP, map[string]string{"KANADE_DEMO_RUNS": "a b=1m"}, nil, []string{`"a b=1m"`}},
		{"a negative probe age", ShellHTTP, map[string]string{"KANADE_PROBE_MAX_AGE": "-1s"}, nil, []string{"KANADE_PROBE_MAX_AGE (-probe-max-age)", `"-1s"`}},
		{"a probe age over a minute", ShellLambda, map[string]string{"KANADE_PROBE_MAX_AGE": "90s"}, nil, []string{"KANADE_PROBE_MAX_AGE", "1m", `"90s"`}},
		{"a probe age that is no duration", ShellHTTP, nil, []string{"-probe-max-age", "2"}, []string{"KANADE_PROBE_MAX_AGE (-probe-max-age)", `"2"`}},
		{"a stall of 0", ShellWorker, map[string]string{"KANADE_PROJECTION_STALL": "0s"}, nil, []string{"KANADE_PROJECTION_STALL", "positive"}},
		{"a size without number", ShellHTTP, map[string]string{"KANADE_PROJECTOR_MAX_BYTES": "MiB"}, nil, []string{"KANADE_PROJECTOR_MAX_BYTES"}},
		{"a size under 1 MiB", ShellWorker, map[string]string{"KANADE_PROJECTOR_MAX_BYTES": "512KiB"}, nil, []string{"at least 1MiB"}},
		{"negative prune days", ShellWorker, map[string]string{"KANADE_AGENT_PRUNE_DAYS": "-1"}, nil, []string{"KANADE_AGENT_PRUNE_DAYS (-agent-prune-days)", `"-1"`}},
		{"prune days that are no number", ShellHTTP, nil, []string{"-agent-prune-days", "30d"}, []string{"KANADE_AGENT_PRUNE_DAYS", `"30d"`}},
		{"a size in an unknown unit", ShellWorker, map[string]string{"KANADE_PROJECTOR_MAX_BYTES": "64MB"}, nil, []string{"KANADE_PROJECTOR_MAX_BYTES"}},
		{"every problem at once", ShellHTTP, map[string]string{"KANADE_DEMO": "x", "KANADE_WORKER": "x"}, nil, []string{"KANADE_DEMO", "KANADE_WORKER"}},
		{"a bootstrap admin name that cannot be a username", ShellHTTP,
			map[string]string{"KANADE_BOOTSTRAP_ADMIN_USER": "the admin", "KANADE_BOOTSTRAP_ADMIN_PASSWORD": "long-enough-pw"}, nil,
			[]string{"KANADE_BOOTSTRAP_ADMIN_USER (-bootstrap-admin-user)", `"the admin"`}},
		{"a positional argument", ShellHTTP, nil, []string{"serve"}, []string{`"serve"`}},
		{"an unknown flag", ShellHTTP, nil, []string{"-admin-addr", "x"}, []string{"admin-addr"}},
		{"Lambda without database, NATS or auth", ShellLambda, nil, nil,
			[]string{"KANADE_DB is required", "KANADE_NATS_URL is required", "KANADE_AUTH_STATIC_TOKEN or KANADE_JWT_SECRET"}},
		{"Lambda flags are not read", ShellLambda, map[string]string{"KANADE_DB": "x", "KANADE_NATS_URL": "y", "KANADE_AUTH_DISABLE": ""},
			[]string{"-db", "z"}, []string{"-db"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.shell, append([]string{"kanade"}, tt.args...), env(tt.env), io.Discard)
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLambdaAcceptsEitherCredentialOrExplicitlyOpen(t *testing.T) {
	base := map[string]string{"KANADE_DB": "libsql://x", "KANADE_NATS_URL": "nats://n"}
	for _, extra := range []map[string]string{
		{"KANADE_AUTH_STATIC_TOKEN": "t"}, {"KANADE_JWT_SECRET": "s"}, {"KANADE_AUTH_DISABLE": ""},
	} {
		e := map[string]string{}
		for k, v := range base {
			e[k] = v
		}
		for k, v := range extra {
			e[k] = v
		}
		if _, err := Parse(ShellLambda, nil, env(e), io.Discard); err != nil {
			t.Errorf("with %v: %v", extra, err)
		}
	}
}

func TestHelpNamesVariablesAndDefaults(t *testing.T) {
	var out bytes.Buffer
	_, err := Parse(ShellWorker, []string{"kanade-worker", "-h"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse -h = %v, want flag.ErrHelp", err)
	}
	for _, s := range settings {
		listed := strings.Contains(out.String(), s.env)
		if want := s.shells&ShellWorker != 0; listed != want {
			t.Errorf("%s listed = %v, want %v", s.env, listed, want)
		}
	}
	for _, want := range []string{"-admin-addr host:port", `KANADE_ADMIN_ADDR (default "127.0.0.1:9090")`, "-auth-disable\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDialableAddressForTheDashboard(t *testing.T) {
	tests := []struct {
		listen string
		want   string
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"},
		{"[::]:8080", "127.0.0.1:8080"},
		{"[::1]:8080", "[::1]:8080"},
	}
	for _, tt := range tests {
		addr, err := net.ResolveTCPAddr("tcp", tt.listen)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialable(addr); got != tt.want {
			t.Errorf("dialable(%s) = %s, want %s", tt.listen, got, tt.want)
		}
	}
}

func TestDurationTextWritesDefaultsAsTyped(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Minute: "2m", 30 * time.Second: "30s", time.Hour: "1h", 90 * time.Second: "1m30s", time.Hour + time.Minute: "1h1m",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
}
