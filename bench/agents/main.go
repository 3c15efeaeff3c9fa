//go:build unix

// Command agents benchmarks GET /api/agents at fleet scale (issue 13): at
// 10k agents the filtered roster (limit=500, q=, status=offline) served 96
// requests/s with a p99 of 2.1 s under 50 connections, against 2,204/s for
// a plain page. This seeds 100k agents into a kept SQLite file (one batched
// insert, reused by later runs), serves the real handler on loopback and
// drives 50 concurrent connections at each variant in turn: the plain page,
// every sort, every filter, q= and the count (total=true). It prints
// requests/s, p50 and p99 of each, and each against the plain page measured
// in the same run, so the figures compare on a shared machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/storage"
)

func main() { cli.Main("agents", run) }

const token = "bench-agents-token-0123456789abcdef"

// now is the benchmark's clock: the seeded heartbeats are spread over the
// ten minutes before it, so with the 2-minute threshold a fifth is online.
var now = time.Date(2026, 6, 20, 12, 0, 0, 0, time.UTC)

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("agents", flag.ContinueOnError)
	n := fs.Int("agents", 100000, "agents in the fleet")
	dbPath := fs.String("db", "", "SQLite file to seed (or reuse); default a temporary one")
	conns := fs.Int("c", 50, "concurrent connections")
	dur := fs.Duration("d", 3*time.Second, "measuring time per variant (after a warm-up of a fifth of it)")
	only := fs.String("only", "", "run only the variants whose query contains this")
	readConns := fs.Int("read-conns", 0, "the SQLite read pool's size (0: storage's default)")
	gzipped := fs.Bool("gzip", false, "ask for gzip as a browser does (the answers are then compressed by the server and decompressed by the client, both in the CPU figure)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured variants (server and client) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target := *dbPath
	if target == "" {
		dir, err := os.MkdirTemp("", "kanade-bench-agents-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		target = filepath.Join(dir, "agents.db")
	}
	db, err := storage.Open(ctx, target, storage.Options{Clock: func() time.Time { return now }, ReadConns: *readConns})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seed(ctx, out, db, target, *n); err != nil {
		return err
	}

	h, err := handlers.New(handlers.Config{DB: db, Clock: func() time.Time { return now }, StaleThreshold: 2 * time.Minute,
		Auth:   auth.Config{StaticToken: token},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer hs.Shutdown(context.Background())
	base := "http://" + ln.Addr().String() + "/api/agents"
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conns, MaxIdleConnsPerHost: *conns, DisableCompression: !*gzipped}}

	// A cursor deep in the hostname order, for the next-page variant.
	deep, err := cursorAt(ctx, client, base+"?sort=hostname&limit=500", 40)
	if err != nil {
		return err
	}
	variants := []string{
		"",
		"?limit=500",
		"?order=desc",
		"?sort=hostname",
		"?sort=hostname&order=desc",
		"?sort=os",
		"?sort=agent_version",
		"?sort=last_heartbeat",
		"?sort=last_heartbeat&order=desc",
		"?sort=status",
		"?sort=hostname&cursor=" + deep,
		"?status=offline",
		"?status=online",
		"?status=offline&limit=500",
		"?os=darwin",
		"?version=0.43.51",
		"?group=lab",
		"?group=kiosk",
		"?os=darwin&sort=last_heartbeat",
		"?version=0.43.51&sort=hostname",
		"?group=kiosk&sort=last_heartbeat",
		"?group=kiosk&sort=hostname&order=desc",
		"?status=online&sort=hostname",
		"?q=host-0123",
		"?q=PC-0999",
		"?q=host-0123&limit=500",
		"?q=st-99999",
		"?q=host-",
		"?q=12",
		"?q=zz",
		"?q=z",
		"?total=true",
		"?status=offline&total=true",
		"?os=darwin&total=true",
		"?version=0.43.51&sort=hostname&total=true",
		"?group=lab&total=true",
		"?group=lab&status=offline&total=true",
		"?q=zz&total=true",
		"?q=host-0123&total=true",
		"?q=PC-0999&total=true",
		"?q=host-&total=true",
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(out, "GET /api/agents over loopback, %d connections, %v per variant (target: p99 < 50ms at 100k agents)\n", *conns, *dur)
	fmt.Fprintf(out, "%-48s %9s %9s %9s %8s %8s %9s %7s %8s\n", "variant", "req/s", "p50", "p99", "rate÷", "p99÷", "cpu/req", "rows", "total")
	var plain result
	for i, v := range variants {
		if *only != "" && i > 0 && !strings.Contains(v, *only) {
			continue
		}
		r, err := drive(ctx, client, base+v, *conns, *dur)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		if i == 0 {
			plain = r
		}
		name := v
		if strings.Contains(name, "cursor=") {
			name = name[:strings.Index(name, "cursor=")] + "cursor=(page 41)"
		}
		if name == "" {
			name = "(plain page, limit 50)"
		}
		fmt.Fprintf(out, "%-48s %9.0f %9s %9s %8.2f %8.2f %9s %7d %8s\n", name, r.rate, ms(r.p50), ms(r.p99),
			r.rate/plain.rate, float64(r.p99)/float64(plain.p99), ms(r.cpu), r.rows, r.total)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// seed fills the agents table once: n agents with hostnames, three OS
// families (80/15/5 %), six versions, heartbeats over the last ten minutes,
// and two groups (lab: one in ten; kiosk: one in a hundred).
func seed(ctx context.Context, out io.Writer, db *storage.DB, target string, n int) error {
	have, err := db.CountAgents(ctx, storage.AgentFilter{})
	if err != nil {
		return err
	}
	if have == int64(n) {
		fmt.Fprintf(out, "reusing %s: %d agents\n", target, have)
		return fill(ctx, out, db)
	}
	if have != 0 {
		return fmt.Errorf("%s holds %d agents, not %d: remove it or pass -db", target, have, n)
	}
	start := time.Now()
	err = db.Update(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`
			WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < %d)
			INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat, updated_at)
			SELECT printf('PC-%%06d', i),
			       printf('host-%%05d', (i * 7919) %% 100000),
			       CASE WHEN i %% 20 = 0 THEN 'darwin' WHEN i %% 20 < 4 THEN 'linux' ELSE 'windows' END,
			       '0.43.' || CASE WHEN i %% 100 < 40 THEN 56 WHEN i %% 100 < 65 THEN 55
			            WHEN i %% 100 < 80 THEN 54 WHEN i %% 100 < 90 THEN 53 WHEN i %% 100 < 97 THEN 52 ELSE 51 END,
			       strftime('%%Y-%%m-%%dT%%H:%%M:%%S', %d - (1 + (i * 7) %% 600), 'unixepoch') || printf('.%%09dZ', (i * 7919) %% 1000000000),
			       '2026-01-01T00:00:00.000000000Z'
			FROM s`, n-1, now.Unix())); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO agent_group_members (group_name, pc_id)
			SELECT 'lab', pc_id FROM agents WHERE substr(pc_id, -1) = '3'
			UNION ALL SELECT 'kiosk', pc_id FROM agents WHERE substr(pc_id, -2) = '42'`)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded %d agents into %s in %v\n", n, target, time.Since(start).Round(time.Millisecond))
	return fill(ctx, out, db)
}

// fill gives every agent the optional columns a 0.43.56 agent's heartbeat
// carries (wire.md: its CPU and memory, disk counters, the logged-on user
// as DOMAIN\user, its command keys and protocols, enforcing), as files
// seeded before it had them only names and a heartbeat: a page of empty
// rows is cheaper to read and encode than a real one. A file already filled
// is left as it is.
func fill(ctx context.Context, out io.Writer, db *storage.DB) error {
	start := time.Now()
	var filled int64
	err := db.Update(ctx, func(tx *storage.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE agents SET
			agent_cpu_pct = (rowid % 1000) / 7.0, agent_rss_bytes = 40000000 + (rowid * 7919) % 120000000,
			agent_disk_read_bytes = rowid * 40961, agent_disk_written_bytes = rowid * 81923, quarantined_versions = '[]',
			last_logon_user = printf('CORP\user%05d', rowid % 50000), last_logon_display_name = printf('User %05d', rowid % 50000),
			command_keys = '["k-2026-01"]', command_protocols = '["v1","v2"]', enforcing = rowid % 2
			WHERE agent_rss_bytes IS NULL`)
		if err != nil {
			return err
		}
		filled, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("fill the agents' optional columns: %w", err)
	}
	if filled > 0 {
		fmt.Fprintf(out, "filled the optional columns of %d agents in %v\n", filled, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func cursorAt(ctx context.Context, c *http.Client, url string, pages int) (string, error) {
	cursor := ""
	for range pages {
		u := url
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		body, _, err := get(ctx, c, u)
		if err != nil {
			return "", err
		}
		i := strings.Index(body, `"next_cursor":"`)
		if i < 0 {
			return "", errors.New("no next_cursor")
		}
		rest := body[i+len(`"next_cursor":"`):]
		cursor = rest[:strings.IndexByte(rest, '"')]
	}
	return cursor, nil
}

func get(ctx context.Context, c *http.Client, url string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s: %d %s", url, res.StatusCode, b)
	}
	return string(b), res.Header.Get("X-Total-Count"), nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
	// cpu is the process's CPU time (user and system) per request over the
	// warm-up and the measured time: the server's share and the client's
	// (the load generator runs in this process too). On a shared machine it
	// is the figure that does not depend on the neighbours.
	cpu   time.Duration
	rows  int
	total string
}

// drive runs conns workers against url, each sending its next request when
// the last is answered, for a warm-up and then for d, and reports the
// measured part.
func drive(ctx context.Context, c *http.Client, url string, conns int, d time.Duration) (result, error) {
	var r result
	body, total, err := get(ctx, c, url)
	if err != nil {
		return r, err
	}
	r.rows, r.total = strings.Count(body, `"pc_id"`), total
	if r.total == "" {
		r.total = "-"
	}
	cpu0, err := cpuTime()
	if err != nil {
		return r, err
	}
	var all atomic.Int64
	warm := time.Now().Add(d / 5)
	end := warm.Add(d)
	var mu sync.Mutex
	var lat []time.Duration
	var first error
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				if _, _, err := get(ctx, c, url); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
				all.Add(1)
				if t0.After(warm) {
					mine = append(mine, time.Since(t0))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return r, first
	}
	cpu1, err := cpuTime()
	if err != nil {
		return r, err
	}
	r.cpu = (cpu1 - cpu0) / time.Duration(max(all.Load(), 1))
	if len(lat) == 0 {
		return r, errors.New("no request finished")
	}
	slices.Sort(lat)
	r.rate = float64(len(lat)) / d.Seconds()
	r.p50 = lat[len(lat)/2]
	r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	return r, nil
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
