package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runCluster: a three-node JetStream cluster (R3), two workers given every
// node; results ingested while the RESULTS stream leader is killed -9 and
// later restarted; meanwhile the scheduler fires calendar one-shots and a
// per_target schedule at heartbeating fake agents. Every acked result must
// land, and every firing must be dispatched exactly once.
func runCluster(ctx context.Context, e *Env, r *Result) error {
	servers, err := e.StartCluster(ctx, 3)
	if err != nil {
		return err
	}
	url := clusterURL(servers)
	r.Do("three nats-server processes in one JetStream cluster on loopback (%s); two workers with KANADE_NATS_URL=<all three> and KANADE_NATS_REPLICAS=3", url)
	db := e.Dir + "/cluster.db"
	for i := 1; i <= 2; i++ {
		if _, err := e.StartWorker(ctx, fmt.Sprintf("worker%d", i), e.shellOpts(db, url, "data", "KANADE_NATS_REPLICAS=3")); err != nil {
			return err
		}
	}
	nc, err := connectNATS(url, "faults-cluster")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The node to kill: the RESULTS stream leader. The command listener
	// connects to another node only, so the kill does not blind it.
	leader := ""
	for t := time.Now(); leader == "" && time.Since(t) < 30*time.Second; sleep(ctx, 500*time.Millisecond) {
		if s, err := js.Stream(ctx, kanade.StreamResults); err == nil && s.CachedInfo().Cluster != nil {
			leader = s.CachedInfo().Cluster.Leader
		}
	}
	victim, listenOn := servers[0], servers[1]
	for i, s := range servers {
		if s.Name == leader {
			victim, listenOn = s, servers[(i+1)%3]
		}
	}
	lc, err := connectNATS(listenOn.URL(), "faults-cluster-listener")
	if err != nil {
		return err
	}
	defer lc.Close()
	type cmdSeen struct {
		subject, requestID, execID string
	}
	var mu sync.Mutex
	var seen []cmdSeen
	sub, err := lc.Subscribe("commands.>", func(m *nats.Msg) {
		var c kanade.Command
		_ = json.Unmarshal(m.Data, &c)
		mu.Lock()
		seen = append(seen, cmdSeen{m.Subject, c.RequestID, c.ExecID})
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := lc.Flush(); err != nil {
		return err
	}

	// Fake agents so the schedules have targets.
	const agents = 5
	hctx, stopBeats := context.WithCancel(ctx)
	defer stopBeats()
	go func() {
		for {
			for i := range agents {
				pc := fmt.Sprintf("CL-%02d", i)
				nc.Publish("heartbeat."+pc, mustJSON(kanade.Heartbeat{PcID: pc, At: kanade.Timestamp{Time: time.Now()}, AgentVersion: "0.45.3"}))
			}
			if sleep(hctx, 5*time.Second) != nil {
				return
			}
		}
	}()
	sleep(ctx, 2*time.Second) // the first beats reach the agents table
	// Calendar one-shots: CI two at the same minute, full one per minute.
	first := time.Now().UTC().Add(25 * time.Second).Truncate(time.Minute).Add(time.Minute)
	var calJobs []string
	var last time.Time
	shots := max(2, e.Size.ClusterOneShots)
	for k := range shots {
		at := first
		if e.Size.ClusterOneShots > 1 {
			at = first.Add(time.Duration(k) * time.Minute)
		}
		last = at
		job := fmt.Sprintf("cl-cal-%d", k)
		calJobs = append(calJobs, job)
		if err := putJob(ctx, js, job); err != nil {
			return err
		}
		body := fmt.Sprintf(`{"id":%q,"when":{"calendar":{"at":%q}},"job_id":%q,"target":{"all":true},"tz":"utc"}`, job, at.Format("2006-01-02 15:04"), job)
		if err := putSchedule(ctx, js, job, body); err != nil {
			return err
		}
		r.Do("calendar one-shot %s at %s UTC (job %s, target all)", job, at.Format("15:04"), job)
	}
	if err := putJob(ctx, js, "cl-target"); err != nil {
		return err
	}
	if err := putSchedule(ctx, js, "cl-target", `{"id":"cl-target","when":{"per_target":{"every":"2m"}},"job_id":"cl-target","target":{"all":true},"tz":"utc"}`); err != nil {
		return err
	}
	schedAt := time.Now()
	r.Do("per_target schedule cl-target every 2m (target all); %d fake agents heartbeating every 5 s; a listener on commands.> connected to %s only", agents, listenOn.Name)

	// Ingest, killing the RESULTS leader mid-way.
	n := e.Size.ClusterResults
	pub, err := NewPublisher(nc, PubOptions{Inflight: 1000, Rate: float64(n) / 30})
	if err != nil {
		return err
	}
	g := Gen{Prefix: "cluster", Base: time.Now().Add(-time.Hour), StdoutBytes: 200, Jobs: []string{"cl-ingest"}}
	pubDone := pub.Background(ctx, n, okResults(g))
	if err := sleep(ctx, 10*time.Second); err != nil {
		return err
	}
	victim.Kill()
	killAt := time.Now()
	r.Do("%d results published over ~30 s; %s (the RESULTS stream leader %q) killed -9 10 s in, restarted 15 s later", n, victim.Name, leader)
	if err := sleep(ctx, 15*time.Second); err != nil {
		return err
	}
	if err := victim.Restart(ctx, true); err != nil {
		return err
	}
	r.Measure("%s down for %s", victim.Name, round(time.Since(killAt)))
	var po Published
	select {
	case po = <-pubDone:
	case <-time.After(3 * time.Minute):
		return fmt.Errorf("publisher not done (%d retries, last error %s)", pub.Retries(), pub.LastError())
	}
	if po.Err != nil {
		return po.Err
	}
	r.Measure("publisher: %d acked, %d retries (last error: %s)", po.Acks.Count(), pub.Retries(), oneLine(pub.LastError(), 120))
	d, err := checkLanded(ctx, e, r, "results", db, wantIDs(g, po.Acks, n), e.Size.Stall)
	if err != nil {
		return err
	}
	// Let the last one-shot fire and its commands arrive.
	if wait := time.Until(last.Add(12 * time.Second)); wait > 0 {
		e.Logf("waiting %s for the last calendar firing", round(wait))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
	elapsed := time.Since(schedAt)
	mu.Lock()
	cmds := append([]cmdSeen(nil), seen...)
	mu.Unlock()

	// Executions from the database.
	sqlDB, err := openDB(db)
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	rows, err := sqlDB.QueryContext(ctx, `SELECT exec_id, COALESCE(job_id, ''), COALESCE(initiated_by, '') FROM executions`)
	if err != nil {
		return err
	}
	execJob := map[string]string{}
	perJob := map[string]int{}
	for rows.Next() {
		var id, job, by string
		if err := rows.Scan(&id, &job, &by); err != nil {
			rows.Close()
			return err
		}
		execJob[id] = job
		perJob[job]++
	}
	rows.Close()
	perPair := map[string]int{}
	subjectsOf := map[string]map[string]int{}
	for _, c := range cmds {
		perPair[c.subject+" "+c.requestID]++
		if subjectsOf[c.execID] == nil {
			subjectsOf[c.execID] = map[string]int{}
		}
		subjectsOf[c.execID][c.subject]++
	}
	var dupPairs, orphan, silent []string
	for k, v := range perPair {
		if v > 1 {
			dupPairs = append(dupPairs, fmt.Sprintf("%s ×%d", k, v))
		}
	}
	for ex, subs := range subjectsOf {
		if _, ok := execJob[ex]; !ok {
			orphan = append(orphan, ex)
		}
		for s, v := range subs {
			if v > 1 {
				dupPairs = append(dupPairs, fmt.Sprintf("exec %s on %s ×%d", ex, s, v))
			}
		}
	}
	for ex := range execJob {
		if _, ok := subjectsOf[ex]; !ok {
			silent = append(silent, ex)
		}
	}
	sort.Strings(dupPairs)
	var jobsSummary []string
	for _, j := range append(append([]string(nil), calJobs...), "cl-target") {
		jobsSummary = append(jobsSummary, fmt.Sprintf("%s: %d", j, perJob[j]))
	}
	r.Measure("%d commands seen on commands.> for %d exec_ids; executions rows per job: %s", len(cmds), len(subjectsOf), strings.Join(jobsSummary, ", "))
	for _, j := range calJobs {
		r.Check(perJob[j] == 1, "calendar one-shot %s fired exactly once (%d executions rows)", j, perJob[j])
	}
	maxTarget := int(elapsed/(90*time.Second)) + 1
	r.Check(perJob["cl-target"] >= 1 && perJob["cl-target"] <= maxTarget, "per_target cl-target fired at least once and at most once per dispatch window (%d firings in %s, at most %d)", perJob["cl-target"], round(elapsed), maxTarget)
	r.Check(len(dupPairs) == 0, "every command subject published once per exec_id / request_id (%d duplicates%s)", len(dupPairs), suffix(dupPairs))
	r.Check(len(orphan) == 0 && len(silent) == 0, "one executions row per firing: no command without its row (%d), no row without its commands (%d)", len(orphan), len(silent))
	r.Figure("%d/%d lost with the stream leader killed; %d firings, %d duplicate dispatches", len(d.Missing), d.Want, len(execJob), len(dupPairs))
	return nil
}
