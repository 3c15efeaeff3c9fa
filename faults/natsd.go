package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NatsServer is an external nats-server process with JetStream, started from
// a config file so that a restart reuses the same port and store.
type NatsServer struct {
	Name        string
	Port        int
	ClusterPort int
	MonPort     int
	StoreDir    string
	Conf        string
	Proc        *Proc
	env         *Env
}

// NatsOptions shape a server.
type NatsOptions struct {
	Name string
	// MaxPayload is nats-server's max_payload ("" keeps the 1 MB default).
	MaxPayload string
}

// URL is the client URL.
func (s *NatsServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// StartNATS starts one standalone server and waits until JetStream is ready.
func (e *Env) StartNATS(ctx context.Context, o NatsOptions) (*NatsServer, error) {
	ss, err := e.startNATS(ctx, []NatsOptions{o}, false)
	if err != nil {
		return nil, err
	}
	return ss[0], nil
}

// StartCluster starts n servers routed into one JetStream cluster.
func (e *Env) StartCluster(ctx context.Context, n int) ([]*NatsServer, error) {
	os := make([]NatsOptions, n)
	for i := range os {
		os[i].Name = fmt.Sprintf("nats%d", i+1)
	}
	return e.startNATS(ctx, os, true)
}

func (e *Env) startNATS(ctx context.Context, opts []NatsOptions, cluster bool) ([]*NatsServer, error) {
	var servers []*NatsServer
	for _, o := range opts {
		s := &NatsServer{Name: o.Name, env: e, StoreDir: filepath.Join(e.Dir, o.Name+"-store"), Conf: filepath.Join(e.Dir, o.Name+".conf")}
		var err error
		if s.Port, err = freePort(); err != nil {
			return nil, err
		}
		if s.MonPort, err = freePort(); err != nil {
			return nil, err
		}
		if cluster {
			if s.ClusterPort, err = freePort(); err != nil {
				return nil, err
			}
		}
		servers = append(servers, s)
	}
	for i, s := range servers {
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %q\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\n", s.Name, s.Port, s.MonPort)
		if opts[i].MaxPayload != "" {
			fmt.Fprintf(&b, "max_payload: %s\n", opts[i].MaxPayload)
		}
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", s.StoreDir)
		if cluster {
			var routes []string
			for _, o := range servers {
				if o != s {
					routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", o.ClusterPort)))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: \"kanade-faults\"\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n", s.ClusterPort, strings.Join(routes, ", "))
		}
		if err := os.WriteFile(s.Conf, []byte(b.String()), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", s.Conf, err)
		}
	}
	for _, s := range servers {
		if err := s.start(); err != nil {
			return nil, err
		}
	}
	for _, s := range servers {
		if err := s.WaitReady(ctx, 60*time.Second); err != nil {
			return nil, err
		}
	}
	return servers, nil
}

func (s *NatsServer) start() error {
	p, err := s.env.Procs.Start(s.Name, filepath.Join(s.env.Bins, "nats-server"), []string{"-c", s.Conf}, nil)
	if err != nil {
		return err
	}
	s.Proc = p
	return nil
}

// WaitReady waits until the server's /healthz says JetStream is current.
func (s *NatsServer) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", s.MonPort)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if s.Proc.Exited() {
			return fmt.Errorf("%s exited: %v; log tail:\n%s", s.Name, s.Proc.ExitErr(), strings.Join(s.Proc.LogTail(10), "\n"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: JetStream not healthy after %v (last: %v)", s.Name, timeout, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// Kill is kill -9.
func (s *NatsServer) Kill() { s.Proc.Kill() }

// Restart starts the server again on the same port and store.
func (s *NatsServer) Restart(ctx context.Context, wait bool) error {
	s.Proc.Kill()
	if err := s.start(); err != nil {
		return err
	}
	if !wait {
		return waitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", s.Port), 30*time.Second)
	}
	return s.WaitReady(ctx, 60*time.Second)
}

// clusterURL joins the client URLs of servers.
func clusterURL(servers []*NatsServer) string {
	var us []string
	for _, s := range servers {
		us = append(us, s.URL())
	}
	return strings.Join(us, ",")
}
