// Command exec measures POST /api/exec against the issue 9 targets, on one
// fleet in one run:
//
//	all:     {"target":{"all":true}} answers within 300 ms at the median,
//	         target_count (a COUNT over the alive agents) included;
//	pc list: {"target":{"pcs":[every PC]}} publishes its 10k commands
//	         (one JetStream message each, with Nats-Msg-Id) within 1 s.
//
// The fleet is real: a SQLite file (or -dsn) holding -pcs agents with fresh
// heartbeats written through storage's UpsertHeartbeats, KV agent_groups
// for them, a job in KV jobs, an embedded NATS JetStream server bootstrapped
// with the default stream configuration (so EXEC stores every command), and
// the handler of handlers.New behind httptest.NewServer, so the request goes
// through real HTTP, the middleware and JSON on both sides. No agent listens:
// the cost measured is the backend's, up to the stream's acknowledgements.
//
// The baselines, measured in the same run and interleaved with the requests
// they are compared with: the bare COUNT(*) of alive agents (storage, no
// HTTP), a GET /healthz round trip (the HTTP floor), and the same 10k
// command messages published straight through nats.go's PublishMsgAsync,
// all in flight at once (no handler, no database).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
	"github.com/kanade-fleet/backend/bench/benchbus"
	"github.com/kanade-fleet/backend/bus"
	"github.com/kanade-fleet/backend/handlers"
	"github.com/kanade-fleet/backend/internal/cli"
	"github.com/kanade-fleet/backend/storage"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() { cli.Main("exec", run) }

// Targets of issue 9.
const (
	targetAll    = 300 * time.Millisecond
	targetPCList = time.Second
)

const (
	benchToken = "bench-exec-token-0123456789abcdef"
	benchJob   = "bench"
	// refreshAfter: the heartbeats are written again (untimed) once they
	// are this old, so every PC stays alive (stale after 2 min) however
	// long a slow machine takes.
	refreshAfter = time.Minute
)

type options struct {
	pcs, groups, runs int
	dsn, dbToken      string
	keep              bool
	cpuprofile        string
}

// run parses the flags, builds the fleet and prints the figures.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.pcs, "pcs", 10000, "PCs in the fleet (all alive)")
	fs.IntVar(&o.groups, "groups", 10, "KV agent_groups: each PC in one of this many groups")
	fs.IntVar(&o.runs, "runs", 30, "timed exec-to-all requests; the pc-list fan-out runs a third as many")
	fs.StringVar(&o.dsn, "dsn", "", "database DSN (a libSQL URL, or a SQLite path) holding no agents yet; default a SQLite file in the temp dir")
	fs.StringVar(&o.dbToken, "db-auth-token", "", "auth token for a libSQL -dsn")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (SQLite file, NATS store) and print its path")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured phases (not the seeding) here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.pcs < 1 || o.groups < 1 || o.runs < 1 {
		return errors.New("-pcs, -groups and -runs must be at least 1")
	}
	dir, err := os.MkdirTemp("", "kanade-bench-exec-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Fprintf(out, "\nkept %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	f, err := openFleet(ctx, dir, o)
	if err != nil {
		return err
	}
	defer f.close()
	return f.measure(ctx, out, o)
}

// fleet is everything one run works against.
type fleet struct {
	db     *storage.DB
	dbName string
	nc     *nats.Conn
	client *bus.Client
	js     jetstream.JetStream
	web    *httptest.Server
	pcs    []string
	beatAt time.Time
	closer []func()
}

func (f *fleet) close() {
	for _, c := range slices.Backward(f.closer) {
		c()
	}
}

func openFleet(ctx context.Context, dir string, o options) (_ *fleet, err error) {
	f := &fleet{}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	dsn := o.dsn
	if dsn == "" {
		dsn = filepath.Join(dir, "kanade.db")
	}
	f.dbName = storage.Redact(dsn)
	if f.db, err = storage.Open(ctx, dsn, storage.Options{AuthToken: o.dbToken}); err != nil {
		return nil, err
	}
	f.closer = append(f.closer, func() { f.db.Close() })
	// The raw baseline has every message in flight at once.
	b, err := benchbus.Start(ctx, filepath.Join(dir, "nats"), jetstream.WithPublishAsyncMaxPending(o.pcs+1))
	if err != nil {
		return nil, err
	}
	f.closer = append(f.closer, b.Close)
	f.nc, f.client, f.js = b.Conn, b.Client, b.JS

	start := time.Now()
	f.pcs = make([]string, o.pcs)
	for i := range f.pcs {
		f.pcs[i] = fmt.Sprintf("PC-%05d", i)
	}
	if err := f.beat(ctx); err != nil {
		return nil, err
	}
	for g := range o.groups {
		var keys []string
		for i := g; i < len(f.pcs); i += o.groups {
			keys = append(keys, f.pcs[i])
		}
		value := fmt.Appendf(nil, `{"groups":["g%02d"]}`, g)
		if err := f.client.PutAll(ctx, kanade.BucketAgentGroups, keys, value); err != nil {
			return nil, err
		}
	}
	job := `{"id":"` + benchJob + `","version":"1","execute":{"shell":"powershell","script":"Get-Date","timeout":"60s"}}`
	if _, err := f.client.Put(ctx, kanade.BucketJobs, benchJob, []byte(job)); err != nil {
		return nil, err
	}
	h, err := handlers.New(handlers.Config{
		DB:     f.db,
		Bus:    bus.Static(f.client),
		Auth:   auth.Config{StaticToken: benchToken},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	f.web = httptest.NewServer(h)
	f.closer = append(f.closer, f.web.Close)
	fmt.Fprintf(os.Stderr, "fleet of %d PCs in %d groups seeded in %v\n", o.pcs, o.groups, time.Since(start).Round(time.Millisecond))
	return f, nil
}

// beat writes a fresh heartbeat for every PC, 2000 to a transaction.
func (f *fleet) beat(ctx context.Context) error {
	now := time.Now()
	beats := make([]kanade.Heartbeat, len(f.pcs))
	for i, pc := range f.pcs {
		beats[i] = kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: now}, AgentVersion: "0.43.56"}
	}
	for chunk := range slices.Chunk(beats, 2000) {
		if err := f.db.Update(ctx, func(tx *storage.Tx) error { return tx.UpsertHeartbeats(ctx, chunk) }); err != nil {
			return fmt.Errorf("heartbeats: %w", err)
		}
	}
	f.beatAt = now
	return nil
}

// fresh beats again when the last beats are getting old.
func (f *fleet) fresh(ctx context.Context) error {
	if time.Since(f.beatAt) < refreshAfter {
		return nil
	}
	return f.beat(ctx)
}

type execAnswer struct {
	ExecID      string   `json:"exec_id"`
	TargetCount int64    `json:"target_count"`
	Subjects    []string `json:"subjects"`
}

// exec sends one POST /api/exec/bench and returns its latency (request
// written to answer read and decoded) and the answer.
func (f *fleet) exec(ctx context.Context, body []byte) (time.Duration, execAnswer, error) {
	var a execAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.web.URL+"/api/exec/"+benchJob, bytes.NewReader(body))
	if err != nil {
		return 0, a, err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Kanade-Source", "bench")
	start := time.Now()
	resp, err := f.web.Client().Do(req)
	if err != nil {
		return 0, a, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, a, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, a, fmt.Errorf("exec: %s: %s", resp.Status, data)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return 0, a, fmt.Errorf("exec answer %s: %w", data, err)
	}
	return time.Since(start), a, nil
}

// healthz is the HTTP floor: one GET /healthz round trip.
func (f *fleet) healthz(ctx context.Context) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.web.URL+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := f.web.Client().Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("healthz: %s", resp.Status)
	}
	return time.Since(start), err
}

// execLastSeq is the EXEC stream's last sequence: the commands a request
// stored are the difference across it.
func (f *fleet) execLastSeq(ctx context.Context) (uint64, error) {
	s, err := f.js.Stream(ctx, kanade.StreamExec)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// stored sends body and checks that the answer counts want PCs and that
// EXEC stored wantMsgs new messages.
func (f *fleet) stored(ctx context.Context, body []byte, want int64, wantMsgs uint64) (time.Duration, execAnswer, error) {
	if err := f.fresh(ctx); err != nil {
		return 0, execAnswer{}, err
	}
	before, err := f.execLastSeq(ctx)
	if err != nil {
		return 0, execAnswer{}, err
	}
	d, a, err := f.exec(ctx, body)
	if err != nil {
		return 0, a, err
	}
	if a.TargetCount != want {
		return 0, a, fmt.Errorf("exec %s: target_count %d, want %d", a.ExecID, a.TargetCount, want)
	}
	after, err := f.execLastSeq(ctx)
	if err != nil {
		return 0, a, err
	}
	if after-before != wantMsgs {
		return 0, a, fmt.Errorf("exec %s: EXEC stored %d messages, want %d", a.ExecID, after-before, wantMsgs)
	}
	return d, a, nil
}

// listen counts, on a connection of its own, the commands.pc.> messages the
// next pc-list request sends, to check that every PC got one with the
// execution's message id.
type listen struct {
	nc  *nats.Conn
	sub *nats.Subscription
	mu  sync.Mutex
	ids map[string]string // subject → Nats-Msg-Id
}

func (f *fleet) listen() (*listen, error) {
	nc, err := nats.Connect(f.nc.ConnectedUrl())
	if err != nil {
		return nil, err
	}
	l := &listen{nc: nc, ids: map[string]string{}}
	l.sub, err = nc.Subscribe(kanade.SubjectCommandsPC+">", func(m *nats.Msg) {
		l.mu.Lock()
		l.ids[m.Subject] = m.Header.Get(jetstream.MsgIDHeader)
		l.mu.Unlock()
	})
	if err == nil {
		err = l.sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return l, nil
}

// check waits (up to 10 s) for one message per PC, each with the message id
// <exec_id>:<subject>.
func (l *listen) check(pcs []string, execID string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.ids)
		l.mu.Unlock()
		if n >= len(pcs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, pc := range pcs {
		subject := kanade.SubjectCommandsPC + pc
		id, ok := l.ids[subject]
		if !ok {
			return fmt.Errorf("no command reached %s (%d of %d did)", subject, len(l.ids), len(pcs))
		}
		if id != execID+":"+subject {
			return fmt.Errorf("command on %s has Nats-Msg-Id %q, want %q", subject, id, execID+":"+subject)
		}
	}
	if len(l.ids) != len(pcs) {
		return fmt.Errorf("%d subjects got a command, want %d", len(l.ids), len(pcs))
	}
	return nil
}

// rawPublish is the publish baseline: the commands of a pc-list fan-out
// (same subjects, same body, a Nats-Msg-Id each) all put in flight through
// PublishMsgAsync, timed until the last acknowledgement.
func (f *fleet) rawPublish(ctx context.Context, round int, data []byte) (time.Duration, error) {
	msgs := make([]*nats.Msg, len(f.pcs))
	for i, pc := range f.pcs {
		subject := kanade.SubjectCommandsPC + pc
		msgs[i] = &nats.Msg{Subject: subject, Data: data,
			Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("raw-%d:%s", round, subject)}}}
	}
	before, err := f.execLastSeq(ctx)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for _, m := range msgs {
		if _, err := f.js.PublishMsgAsync(m); err != nil {
			return 0, fmt.Errorf("raw publish: %w", err)
		}
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, errors.New("raw publish: no acknowledgement within a minute")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	d := time.Since(start)
	after, err := f.execLastSeq(ctx)
	if err != nil {
		return 0, err
	}
	if after-before != uint64(len(f.pcs)) {
		return 0, fmt.Errorf("raw publish: EXEC stored %d messages, want %d", after-before, len(f.pcs))
	}
	return d, nil
}

func (f *fleet) measure(ctx context.Context, out io.Writer, o options) error {
	allBody := []byte(`{"target":{"all":true}}`)
	pcBody, err := json.Marshal(map[string]any{"target": map[string]any{"pcs": f.pcs}})
	if err != nil {
		return err
	}
	n := int64(len(f.pcs))

	// Warm-up, untimed: one of each, the pc-list one watched by a
	// subscriber (which would add to the timed runs' load).
	if _, _, err := f.stored(ctx, allBody, n, 1); err != nil {
		return err
	}
	l, err := f.listen()
	if err != nil {
		return err
	}
	defer l.nc.Close()
	_, a, err := f.stored(ctx, pcBody, n, uint64(n))
	if err != nil {
		return err
	}
	if err := l.check(f.pcs, a.ExecID); err != nil {
		return err
	}
	// The raw baseline sends exactly what the handler sent.
	s, err := f.js.Stream(ctx, kanade.StreamExec)
	if err != nil {
		return err
	}
	sample, err := s.GetLastMsgForSubject(ctx, kanade.SubjectCommandsPC+f.pcs[0])
	if err != nil {
		return err
	}
	command := sample.Data

	if o.cpuprofile != "" {
		pf, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	// (1) exec to all, each beside a bare count and an HTTP floor.
	var all, count, floor []time.Duration
	for range o.runs {
		if err := f.fresh(ctx); err != nil {
			return err
		}
		start := time.Now()
		c, err := f.db.CountAlive(ctx, f.beatAt.Add(-kanade.DefaultStaleThreshold))
		if err != nil {
			return err
		}
		count = append(count, time.Since(start))
		if c != n {
			return fmt.Errorf("bare count: %d alive, want %d", c, n)
		}
		h, err := f.healthz(ctx)
		if err != nil {
			return err
		}
		floor = append(floor, h)
		d, _, err := f.stored(ctx, allBody, n, 1)
		if err != nil {
			return err
		}
		all = append(all, d)
	}

	// (2) the pc-list fan-out beside the raw publish of the same messages,
	// taking turns at going first (the stream's store may still be busy
	// with the one before).
	var list, raw []time.Duration
	for i := range max(1, o.runs/3) {
		ours := func() error {
			d, _, err := f.stored(ctx, pcBody, n, uint64(n))
			list = append(list, d)
			return err
		}
		base := func() error {
			d, err := f.rawPublish(ctx, i, command)
			raw = append(raw, d)
			return err
		}
		first, second := ours, base
		if i%2 == 1 {
			first, second = base, ours
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}

	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "fleet: %d PCs alive in %d groups; database %s; embedded NATS, EXEC as bootstrapped (%d msgs, %.1f MiB stored at the end)\n",
		n, o.groups, f.dbName, info.State.Msgs, float64(info.State.Bytes)/(1<<20))
	fmt.Fprintf(out, "command body %d bytes; pc-list request body %.1f KiB\n\n", len(command), float64(len(pcBody))/1024)
	rows := []struct {
		name string
		ds   []time.Duration
	}{
		{fmt.Sprintf("POST /api/exec all (target_count %d checked)", n), all},
		{"  baseline: bare COUNT(*) of alive agents (storage, no HTTP)", count},
		{"  baseline: GET /healthz (HTTP floor)", floor},
		{fmt.Sprintf("POST /api/exec pcs x %d (%d stored by EXEC checked)", n, n), list},
		{fmt.Sprintf("  baseline: raw PublishMsgAsync of the same %d messages", n), raw},
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	// Names padded by hand: tabwriter aligns every column right.
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tp50 ms\tp90 ms\tmax ms\truns\t\n", width, "")
	for _, r := range rows {
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t%d\t\n", width, r.name, msf(pct(r.ds, 50)), msf(pct(r.ds, 90)), msf(slices.Max(r.ds)), len(r.ds))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	x, y, z := pct(all, 50), pct(list, 50), pct(raw, 50)
	fmt.Fprintf(out, "\nexec all p50 = %s ms (target %d ms) %s; p50 / bare count = %.1fx, p50 / HTTP floor = %.1fx\n",
		msf(x), targetAll.Milliseconds(), verdict(x, targetAll), ratio(x, pct(count, 50)), ratio(x, pct(floor, 50)))
	fmt.Fprintf(out, "pc-list %d p50 = %s ms (target %d ms) %s (max %s ms %s), raw publish %d = %s ms, ratio Y/Z = %.2f\n",
		n, msf(y), targetPCList.Milliseconds(), verdict(y, targetPCList), msf(slices.Max(list)), verdict(slices.Max(list), targetPCList),
		n, msf(z), ratio(y, z))
	return nil
}

// pct is the p-th percentile of ds by nearest rank.
func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func msf(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func verdict(d, target time.Duration) string {
	if d <= target {
		return "MET"
	}
	return "MISSED"
}
