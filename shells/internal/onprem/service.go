package onprem

import (
	"bytes"
	"path/filepath"
	"strings"

	"github.com/kanade-fleet/backend/shells/internal/app"
)

// ServiceCommand is the subcommand that installs, removes, starts and stops
// the shell as a Windows service: `kanade-http service install [flags]`.
// The flags after install are the shell's own and go into the service's
// command line; a service has no environment of its own, so flags are how
// it is configured.
const ServiceCommand = "service"

// IsService says whether args ask for the service subcommand.
func IsService(args []string) bool { return len(args) > 1 && args[1] == ServiceCommand }

// Service describes the Windows service of a shell.
type Service struct {
	// Name is the service's (and its event log source's) name.
	Name        string
	DisplayName string
	Description string
}

// ServiceOf is the service a shell installs as: "kanade" for the HTTP
// shell, which is the whole backend, and "kanade-worker" for the worker.
func ServiceOf(shell app.Shell) Service {
	if shell == app.ShellWorker {
		return Service{Name: "kanade-worker", DisplayName: "kanade worker",
			Description: "kanade fleet backend: the projector (NATS to SQL) and the scheduler, without the API"}
	}
	return Service{Name: "kanade", DisplayName: "kanade backend",
		Description: "kanade fleet backend: API, dashboard and worker, with an embedded NATS unless configured otherwise"}
}

// withDataDir returns the shell's flags with -data-dir set to def unless
// they set it already: a service starts in the system folder, where the
// default ./data would land.
func withDataDir(args []string, def string) []string {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "data-dir" {
			return args
		}
	}
	return append([]string{"-data-dir", def}, args...)
}

// flagValue returns the value of -name in args ("-name v", "-name=v", with
// one or two dashes), and "" when it is absent.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		n, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n != name {
			continue
		}
		if hasValue {
			return v
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// defaultServiceDataDir is where a service keeps its data when not told:
// under ProgramData, named after the service.
func defaultServiceDataDir(programData, service string) string {
	if programData == "" {
		programData = `C:\ProgramData`
	}
	return filepath.Join(programData, service)
}

// Severity is how an event log entry is filed.
type Severity uint8

// The event log's three kinds of entry.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityError
)

// severityOf reads the level of one log line as the shell writes it (slog
// text or JSON): the event log files errors and warnings apart, so an
// operator filtering for errors sees the shell's.
func severityOf(line []byte) Severity {
	for _, l := range []struct {
		marks [][]byte
		sev   Severity
	}{
		{[][]byte{[]byte(" level=ERROR"), []byte(`"level":"ERROR"`)}, SeverityError},
		{[][]byte{[]byte(" level=WARN"), []byte(`"level":"WARN"`)}, SeverityWarning},
	} {
		for _, m := range l.marks {
			if bytes.Contains(line, m) {
				return l.sev
			}
		}
	}
	return SeverityInfo
}

// eventSink receives one event log entry.
type eventSink func(sev Severity, msg string) error

// lineWriter turns what the shell writes (slog records, one per Write, and
// the lines it prints on stdout) into one event log entry per line.
type lineWriter struct {
	sink eventSink
}

func (w lineWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			continue
		}
		if err := w.sink(severityOf(line), string(line)); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
