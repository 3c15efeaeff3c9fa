//go:build windows

package onprem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kanade-fleet/backend/shells/internal/app"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// stopWait bounds how long uninstall and stop wait for the service to stop:
// its own graceful shutdown, and a little more.
const stopWait = app.ShutdownTimeout + 10*time.Second

// RunAsService runs the shell under the service control manager when the
// process was started by it, and reports whether it was. Its log goes to
// the event log (source: the service's name), a stop or a system shutdown
// starts the same graceful shutdown SIGTERM does, and a run that fails ends
// the service with a service-specific exit code, which the recovery actions
// install set restart.
func RunAsService(s Service, run app.RunFunc) (bool, error) {
	isService, err := svc.IsWindowsService()
	if err != nil || !isService {
		return false, err
	}
	elog, err := eventlog.Open(s.Name)
	if err != nil {
		return true, fmt.Errorf("event log %s: %w", s.Name, err)
	}
	defer elog.Close()
	h := &handler{run: run, w: lineWriter{sink: func(sev Severity, msg string) error {
		switch sev {
		case SeverityError:
			return elog.Error(1, msg)
		case SeverityWarning:
			return elog.Warning(1, msg)
		}
		return elog.Info(1, msg)
	}}}
	if err := svc.Run(s.Name, h); err != nil {
		elog.Error(1, fmt.Sprintf("%s: service failed: %v", s.Name, err))
		return true, err
	}
	return true, nil
}

// handler is the shell as an svc.Handler.
type handler struct {
	run app.RunFunc
	w   io.Writer
}

// Execute runs the shell until it ends or the service manager asks it to
// stop. The state goes to Running at once: the shell serves its probes
// while NATS and the database come up, as it does under systemd.
func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx, os.Args, os.LookupEnv, h.w, h.w) }()
	status <- svc.Status{State: svc.Running, Accepts: accepts}
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(h.w, "time=%s level=ERROR msg=%q\n", time.Now().UTC().Format(time.RFC3339), "stopped: "+err.Error())
				return true, 1
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWait.Milliseconds())}
				cancel()
			}
		}
	}
}

func serviceUsage(w io.Writer, name string) {
	fmt.Fprintf(w, `Usage: %[1]s service install [flags]   install as a Windows service (automatic start); flags as for %[1]s
       %[1]s service uninstall         stop and remove the service and its event log source
       %[1]s service start | stop      start or stop the installed service
`, name)
}

// ServiceMain carries out the service subcommand (see ServiceCommand).
func ServiceMain(s Service, args []string, stdout, stderr io.Writer) error {
	if len(args) < 3 {
		serviceUsage(stderr, filepath.Base(args[0]))
		return errors.New("service: say install, uninstall, start or stop")
	}
	switch args[2] {
	case "install":
		return install(s, args[3:], stdout)
	case "uninstall":
		return uninstall(s, stdout)
	case "start":
		return start(s, stdout)
	case "stop":
		return stop(s, stdout)
	}
	serviceUsage(stderr, filepath.Base(args[0]))
	return fmt.Errorf("service: unknown command %q", args[2])
}

// install registers the service: automatic (delayed) start, the flags on
// its command line with -data-dir under ProgramData unless given, its own
// virtual account (NT SERVICE\<name>) with modify rights on that folder
// only, restart on failure, and an event log source.
func install(s Service, flags []string, stdout io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	flags = withDataDir(flags, defaultServiceDataDir(os.Getenv("ProgramData"), s.Name))
	dataDir := flagValue(flags, "data-dir")
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service install: connect to the service manager (run as administrator): %w", err)
	}
	defer m.Disconnect()
	if old, err := m.OpenService(s.Name); err == nil {
		old.Close()
		return fmt.Errorf("service install: %s is installed already; `service uninstall` first", s.Name)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("service install: data folder: %w", err)
	}
	account := `NT SERVICE\` + s.Name
	service, err := m.CreateService(s.Name, exe, mgr.Config{
		DisplayName: s.DisplayName, Description: s.Description,
		StartType: mgr.StartAutomatic, DelayedAutoStart: true,
		ServiceStartName: account,
	}, flags...)
	if err != nil {
		return fmt.Errorf("service install: create %s: %w", s.Name, err)
	}
	defer service.Close()
	undo := func(err error) error {
		service.Delete()
		return err
	}
	restart := mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: 5 * time.Second}
	if err := service.SetRecoveryActions([]mgr.RecoveryAction{restart, restart, restart}, uint32((24 * time.Hour).Seconds())); err != nil {
		return undo(fmt.Errorf("service install: recovery actions: %w", err))
	}
	if err := service.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return undo(fmt.Errorf("service install: recovery actions: %w", err))
	}
	// The account exists once the service does; it may write only here.
	grant := exec.Command("icacls", dataDir, "/grant", account+":(OI)(CI)M", "/T", "/Q")
	if out, err := grant.CombinedOutput(); err != nil {
		return undo(fmt.Errorf("service install: grant %s modify rights on %s: %w: %s", account, dataDir, err, out))
	}
	if err := eventlog.InstallAsEventCreate(s.Name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		return undo(fmt.Errorf("service install: event log source: %w", err))
	}
	fmt.Fprintf(stdout, "%s: installed (account %s, data %s); start it with `%s service start` or at the next boot\n",
		s.Name, account, dataDir, filepath.Base(exe))
	return nil
}

// uninstall stops the service if it runs, then removes it and its event log
// source. The data folder stays.
func uninstall(s Service, stdout io.Writer) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service uninstall: connect to the service manager (run as administrator): %w", err)
	}
	defer m.Disconnect()
	service, err := m.OpenService(s.Name)
	if err != nil {
		return fmt.Errorf("service uninstall: %s is not installed: %w", s.Name, err)
	}
	defer service.Close()
	if err := stopAndWait(service); err != nil {
		return fmt.Errorf("service uninstall: %w", err)
	}
	if err := service.Delete(); err != nil {
		return fmt.Errorf("service uninstall: delete %s: %w", s.Name, err)
	}
	if err := eventlog.Remove(s.Name); err != nil {
		return fmt.Errorf("service uninstall: event log source: %w", err)
	}
	fmt.Fprintf(stdout, "%s: removed (the data folder is kept)\n", s.Name)
	return nil
}

func start(s Service, stdout io.Writer) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service start: %w", err)
	}
	defer m.Disconnect()
	service, err := m.OpenService(s.Name)
	if err != nil {
		return fmt.Errorf("service start: %s is not installed: %w", s.Name, err)
	}
	defer service.Close()
	if err := service.Start(); err != nil {
		return fmt.Errorf("service start: %w", err)
	}
	fmt.Fprintf(stdout, "%s: started; its log is in the event log (source %s)\n", s.Name, s.Name)
	return nil
}

func stop(s Service, stdout io.Writer) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service stop: %w", err)
	}
	defer m.Disconnect()
	service, err := m.OpenService(s.Name)
	if err != nil {
		return fmt.Errorf("service stop: %s is not installed: %w", s.Name, err)
	}
	defer service.Close()
	if err := stopAndWait(service); err != nil {
		return fmt.Errorf("service stop: %w", err)
	}
	fmt.Fprintf(stdout, "%s: stopped\n", s.Name)
	return nil
}

// stopAndWait asks a running service to stop and waits until it has, up to
// stopWait.
func stopAndWait(service *mgr.Service) error {
	st, err := service.Query()
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if st.State == svc.Stopped {
		return nil
	}
	if st.State != svc.StopPending {
		if _, err := service.Control(svc.Stop); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	}
	deadline := time.Now().Add(stopWait)
	for st.State != svc.Stopped {
		if time.Now().After(deadline) {
			return fmt.Errorf("still %v after %v", st.State, stopWait)
		}
		time.Sleep(200 * time.Millisecond)
		if st, err = service.Query(); err != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	return nil
}
