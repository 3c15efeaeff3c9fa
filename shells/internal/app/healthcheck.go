package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// HealthcheckCommand is the subcommand a container's health check runs:
// the image has no shell and no curl to probe with, only the shell itself.
const HealthcheckCommand = "healthcheck"

// healthcheckTimeout stays under the health check timeouts orchestrators
// use by default (Docker: 30 s; compose.yaml sets 5 s).
const healthcheckTimeout = 4 * time.Second

// IsHealthcheck says whether args ask for the healthcheck subcommand.
func IsHealthcheck(args []string) bool { return len(args) > 1 && args[1] == HealthcheckCommand }

// Healthcheck probes the shell running on this host: `healthcheck [path |
// url]` GETs /healthz (or the path, such as /readyz) on the address the
// shell's configuration names (KANADE_HTTP_ADDR, or KANADE_ADMIN_ADDR for
// the worker; an unspecified host means loopback). It returns nil for a 200
// and an error naming the answer otherwise, so the exit status is the
// verdict.
func Healthcheck(ctx context.Context, shell Shell, args []string, lookup func(string) (string, bool), stdout io.Writer) error {
	if len(args) > 3 {
		return errors.New("healthcheck: usage: healthcheck [/path | http://host:port/path]")
	}
	target := "/healthz"
	if len(args) == 3 {
		target = args[2]
	}
	url, err := probeURL(shell, target, lookup)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// No proxy: the probe is of this host, whatever HTTP_PROXY says.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	body = bytes.TrimSpace(body)
	fmt.Fprintf(stdout, "%s: %s %s\n", url, resp.Status, body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}

// probeURL is the URL of target (a path or a whole URL) on the shell's
// configured address.
func probeURL(shell Shell, target string, lookup func(string) (string, bool)) (string, error) {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		return target, nil
	}
	if !strings.HasPrefix(target, "/") {
		return "", fmt.Errorf("want a path such as /readyz or a URL, got %q", target)
	}
	env := "KANADE_HTTP_ADDR"
	if shell == ShellWorker {
		env = "KANADE_ADMIN_ADDR"
	}
	addr := ""
	for _, s := range settings {
		if s.env == env {
			addr = s.def
		}
	}
	if v, ok := lookup(env); ok && strings.TrimSpace(v) != "" {
		addr = strings.TrimSpace(v)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s: want host:port, got %q", env, addr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + target, nil
}
