package kanade

import "time"

// ResourceKind says which JetStream API manages a resource.
type ResourceKind string

// The three kinds of JetStream resources of wire.md §2.
const (
	KindStream      ResourceKind = "stream"
	KindKeyValue    ResourceKind = "kv"
	KindObjectStore ResourceKind = "object_store"
)

// Resource is one entry of the bootstrap contract, in the words of wire.md
// §2: only the fields its Kind uses are set. The bus package turns it into
// JetStream configuration; the list lives here, beside the wire types,
// because the bootstrap and the fleet-health probe must read the same one.
type Resource struct {
	Kind ResourceKind
	Name string
	// Streams: the subjects they capture, their limits (discard old), and
	// at most this many messages per subject (0: no limit).
	Subjects          []string
	MaxAge            time.Duration
	MaxBytes          int64
	MaxMsgsPerSubject int64
	// KV buckets: how many values a key keeps, and how long (0: forever).
	History uint8
	TTL     time.Duration
	// Replicas of every resource (1, or 3 on a clustered NATS).
	Replicas int
}

// Names of the resources other parts address directly.
const (
	StreamResults       = "RESULTS"
	StreamEvents        = "EVENTS"
	StreamAudit         = "AUDIT"
	StreamExec          = "EXEC"
	BucketScriptCurrent = "script_current"
	BucketScriptStatus  = "script_status"
	BucketAgentGroups   = "agent_groups"
	BucketSchedules     = "schedules"
	BucketJobs          = "jobs"
	BucketFleetConfig   = "fleet_config"
	BucketDispatch      = "scheduler_dispatch"
	ObjectResultOutput  = "result_output"
	// The operator's YAML text of each job and schedule, as sent (control.md
	// §5.3): only the dashboard's editor reads them.
	BucketJobsYAML      = "jobs_yaml"
	BucketSchedulesYAML = "schedules_yaml"
	// ObjectScripts holds the script bodies a manifest names with
	// execute.script_object (<name>/<version>), uploaded through
	// /api/script-objects (observe.md §5).
	ObjectScripts = "scripts"
	// KeyFreeze is fleet_config's one key: the fleet freeze (control.md §6).
	KeyFreeze = "freeze"
)

const (
	day = 24 * time.Hour
	kib = 1024
	mib = 1024 * kib
	gib = 1024 * mib
)

// Resources is the bootstrap contract of wire.md §2 with the given replica
// count. The bootstrap creates exactly this list and the fleet-health probe
// checks exactly this list, so the two cannot drift apart. Object stores
// keep their objects for MaxAge and at most MaxBytes (0: no limit).
func Resources(replicas int) []Resource {
	if replicas < 1 {
		replicas = 1
	}
	stream := func(name, subject string, maxAge time.Duration, maxBytes int64) Resource {
		return Resource{Kind: KindStream, Name: name, Subjects: []string{subject}, MaxAge: maxAge, MaxBytes: maxBytes,
			Replicas: replicas}
	}
	kv := func(name string, history uint8, ttl time.Duration) Resource {
		return Resource{Kind: KindKeyValue, Name: name, History: history, TTL: ttl, Replicas: replicas}
	}
	obj := func(name string, maxAge time.Duration, maxBytes int64) Resource {
		return Resource{Kind: KindObjectStore, Name: name, MaxAge: maxAge, MaxBytes: maxBytes, Replicas: replicas}
	}
	exec := stream(StreamExec, "commands.>", 7*day, 64*mib)
	exec.MaxMsgsPerSubject = 1
	return []Resource{
		stream("INVENTORY", "inventory.>", 90*day, 1*gib),
		stream(StreamResults, "results.>", 30*day, 2*gib),
		exec,
		stream(StreamEvents, "events.>", 7*day, 256*mib),
		stream(StreamAudit, "audit.>", 90*day, 512*mib),
		stream(StreamObsEvents, SubjectObsAll, 90*day, 512*mib),
		stream(StreamNotifications, SubjectNotifications, 90*day, 512*mib),
		kv(BucketScriptCurrent, 5, 0),
		kv(BucketScriptStatus, 5, 0),
		kv("agents_state", 1, 0),
		kv(BucketAgentConfig, 1, 0),
		kv(BucketAgentGroups, 1, 0),
		kv(BucketSchedules, 5, 0),
		kv(BucketJobs, 5, 0),
		kv(BucketFleetConfig, 1, 0),
		kv(BucketJobsYAML, 5, 0),
		kv(BucketSchedulesYAML, 5, 0),
		obj(ObjectAgentReleases, 0, 0),
		obj(ObjectResultOutput, 30*day, 1*gib),
		// observe.md §0.8: uncapped, as the 0.43.56 bootstrap made them.
		obj(ObjectAppPackages, 0, 0),
		obj(ObjectScripts, 0, 0),
		// Agent-owned (observe.md §4.4, open point 4): which user read which
		// notification.
		kv(BucketNotificationsRead, 1, 0),
	}
}

// ResourceStatus is the probe result of one JetStream resource. It lives here,
// beside Resources, so the bus package that probes and the handlers that
// report can share it without importing each other.
type ResourceStatus struct {
	Kind   ResourceKind
	Name   string
	Exists bool
	// Err says why the resource could not be checked; nil when the check got
	// an answer (present or absent).
	Err error
}
