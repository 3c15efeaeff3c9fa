// Package app is the plumbing every shell needs, the Lambda one included:
// configuration from flags and environment, logging, authentication set-up,
// opening the database and the NATS link, the HTTP server with graceful
// shutdown, and Main.
//
// Every shell links all of it, so it must never import what only some
// shells run: the embedded NATS server (bus/natsd), the writing side
// (projection, schedule, sim: see shells/internal/onprem) or the API
// (handlers, huma, spa: see shells/internal/api). It is wiring only, with
// no domain rules and no global state: everything it builds is handed back
// to the shell that asked.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/sign"
)

// Shell says which program is being configured; each sees only the settings
// that mean something to it.
type Shell uint8

// The three shells.
const (
	ShellHTTP Shell = 1 << iota
	ShellWorker
	ShellLambda
)

const (
	onPrem = ShellHTTP | ShellWorker
	api    = ShellHTTP | ShellLambda // the shells that serve the API
	every  = ShellHTTP | ShellWorker | ShellLambda
)

// Config is the configuration of a shell, read from KANADE_* variables and
// overridden by flags. Parse fills defaults and validates it.
type Config struct {
	// HTTPAddr is where the HTTP shell listens (KANADE_HTTP_ADDR).
	HTTPAddr string
	// AdminAddr is where the worker shell serves /healthz and /metrics.
	AdminAddr string
	// DataDir holds the SQLite file, the embedded NATS store and the
	// generated auth token.
	DataDir string
	// DB is a SQLite path or file: URL, or an http(s)://, ws(s):// or
	// libsql:// URL of a libSQL server.
	DB          string
	DBAuthToken string
	// NATSURL names an external NATS; empty starts an embedded server.
	NATSURL string
	// NATSListen is the embedded server's host:port (port -1 picks one).
	NATSListen string
	// NATSToken is the client token, also required by the embedded server.
	NATSToken    string
	NATSReplicas int
	// StaleThreshold: an agent whose last heartbeat is older is stale.
	StaleThreshold time.Duration
	// StaleDegradedRatio: stale/known at or above it degrades fleet health.
	StaleDegradedRatio float64
	// ProjectionStall: a projection making no progress this long while
	// messages wait degrades fleet health and the worker's readiness.
	ProjectionStall time.Duration
	// ProbeMaxAge: fleet health may answer from a JetStream probe sent up to
	// this long before its request arrived (handlers.Config.ProbeMaxAge).
	ProbeMaxAge time.Duration
	// ProjectorMaxBytes bounds the message bytes each projected stream holds
	// in memory.
	ProjectorMaxBytes int64
	// AgentPruneDays: the worker deletes agents not seen for this many days
	// (0: never), unless KV server_settings sets agent_prune_days.
	AgentPruneDays int
	// AuthDisabled opens every route (KANADE_AUTH_DISABLE present).
	AuthDisabled    bool
	AuthStaticToken string
	JWTSecret       string
	// BootstrapAdminUser and BootstrapAdminPassword name the first admin,
	// created when the accounts table is empty (control.md §9.3); no
	// password, no bootstrap.
	BootstrapAdminUser     string
	BootstrapAdminPassword string
	// Worker runs the projector and scheduler inside the HTTP shell.
	Worker    bool
	LogLevel  slog.Level
	LogFormat string
	// Demo is the number of simulated agents; 0 is off.
	Demo int
	// DemoRuns fixes how long the simulated agents' runs of the named jobs
	// last (sim.Config.RunDurations), so a kill can be tried on a run that
	// would otherwise end in a second; nil when unset.
	DemoRuns map[string]time.Duration
	// CommandSigner signs every published Command (control.md §7), from
	// KANADE_COMMAND_SIGNING_KEY and KANADE_COMMAND_SIGNING_KID; nil when
	// neither is set (commands go out unsigned).
	CommandSigner *sign.Signer
}

// setting is one configuration value: an environment variable and the flag
// that overrides it.
type setting struct {
	env, flag, def, usage string
	shells                Shell
	// presence: the variable counts when set at all, even empty; as a flag it
	// is a boolean.
	presence bool
	// placeholder names the value in -h output.
	placeholder string
}

// durationText writes a default duration the way an operator would type it
// ("2m", not "2m0s").
func durationText(d time.Duration) string {
	t := d.String()
	if strings.HasSuffix(t, "m0s") {
		t = strings.TrimSuffix(t, "0s")
	}
	if strings.HasSuffix(t, "h0m") {
		t = strings.TrimSuffix(t, "0m")
	}
	return t
}

var settings = []setting{
	// Where it listens and what it stores.
	{env: "KANADE_HTTP_ADDR", flag: "addr", def: "127.0.0.1:8080", shells: ShellHTTP, placeholder: "host:port",
		usage: "address the HTTP server (API, dashboard, probes) listens on"},
	{env: "KANADE_ADMIN_ADDR", flag: "admin-addr", def: "127.0.0.1:9090", shells: ShellWorker, placeholder: "host:port",
		usage: "address the worker serves /healthz and /metrics on"},
	{env: "KANADE_DATA_DIR", flag: "data-dir", def: "./data", shells: onPrem, placeholder: "dir",
		usage: "folder for the SQLite file, the embedded NATS store and the generated API token"},
	// The database.
	{env: "KANADE_DB", flag: "db", def: "", shells: every, placeholder: "dsn",
		usage: "database: a SQLite path or file: URL (default <data-dir>/kanade.db), or an http://, https://, ws://, wss:// or libsql:// URL of a libSQL server"},
	{env: "KANADE_DB_AUTH_TOKEN", flag: "db-auth-token", shells: every, placeholder: "token",
		usage: "auth token for a libSQL server (prefer the variable: flags show in ps)"},
	// NATS.
	{env: "KANADE_NATS_URL", flag: "nats-url", shells: every, placeholder: "url",
		usage: "NATS server URL; empty starts an embedded NATS JetStream server"},
	{env: "KANADE_NATS_LISTEN", flag: "nats-listen", def: "127.0.0.1:4222", shells: onPrem, placeholder: "host:port",
		usage: "listen address of the embedded NATS server (port -1 picks a free one)"},
	{env: "KANADE_NATS_TOKEN", flag: "nats-token", shells: every, placeholder: "token",
		usage: "NATS client token; when set, the embedded server requires it too"},
	{env: "KANADE_NATS_REPLICAS", flag: "nats-replicas", def: "1", shells: onPrem, placeholder: "n",
		usage: "replicas of every JetStream stream, bucket and object store (3 on a clustered NATS)"},
	// The fleet rules behind health and readiness.
	{env: "KANADE_STALE_THRESHOLD", flag: "stale-threshold", def: durationText(kanade.DefaultStaleThreshold), shells: every, placeholder: "duration",
		usage: "an agent is stale when its last heartbeat is older than this"},
	{env: "KANADE_STALE_DEGRADED_RATIO", flag: "stale-degraded-ratio", def: strconv.FormatFloat(kanade.DefaultStaleDegradedRatio, 'f', 1, 64), shells: every, placeholder: "ratio",
		usage: "fleet health is degraded when stale/known agents reaches this ratio, in (0, 1]; 1.0 = only a total blackout"},
	{env: "KANADE_PROJECTION_STALL", flag: "projection-stall", def: durationText(kanade.DefaultStallAfter), shells: every, placeholder: "duration",
		usage: "fleet health and worker readiness fail when a projection makes no progress this long while messages wait"},
	{env: "KANADE_PROBE_MAX_AGE", flag: "probe-max-age", def: "0s", shells: api, placeholder: "duration",
		usage: "fleet health may answer from a JetStream probe sent up to this long before the request arrived, one probe shared by the requests within it (0 = only a probe sent after the request arrived, the freshest answer; at most 1m)"},
	// The projector.
	{env: "KANADE_PROJECTOR_MAX_BYTES", flag: "projector-max-bytes", def: "64MiB", shells: onPrem, placeholder: "bytes",
		usage: "message bytes each projected stream may hold in memory (e.g. 64MiB; never less than twice NATS's max_payload for the fetch)"},
	{env: "KANADE_AGENT_PRUNE_DAYS", flag: "agent-prune-days", def: "0", shells: onPrem, placeholder: "days",
		usage: "delete agents whose last heartbeat is older than this many days (0 = never; at most 36500); agent_prune_days in KV server_settings, when set, wins"},
	// Authentication.
	{env: "KANADE_AUTH_DISABLE", flag: "auth-disable", shells: every, presence: true,
		usage: "disable authentication entirely (the variable counts when set at all, even empty)"},
	{env: "KANADE_AUTH_STATIC_TOKEN", flag: "auth-static-token", shells: every, placeholder: "token",
		usage: "static bearer token for /api and /metrics (caller service-token)"},
	{env: "KANADE_JWT_SECRET", flag: "jwt-secret", shells: every, placeholder: "secret",
		usage: "HS256 secret for bearer JWTs (audience kanade); also signs the tokens of account logins"},
	{env: "KANADE_BOOTSTRAP_ADMIN_USER", flag: "bootstrap-admin-user", def: "admin", shells: api, placeholder: "name",
		usage: "username of the first admin account, created with KANADE_BOOTSTRAP_ADMIN_PASSWORD when there are no accounts"},
	{env: "KANADE_BOOTSTRAP_ADMIN_PASSWORD", flag: "bootstrap-admin-password", shells: api, placeholder: "password",
		usage: "password of the first admin (at least 8 characters; changed at first login); only used while there are no accounts (prefer the variable: flags show in ps)"},
	// Command signing: every shell publishes commands (exec, run, the
	// scheduler's firings), so every shell signs them.
	{env: envSigningKey, flag: "command-signing-key", shells: every, placeholder: "base64",
		usage: "Ed25519 key every published command is signed with: standard base64 of the 32-byte seed, as the keygen subcommand prints it; only together with " + envSigningKid + " (prefer the variable: flags show in ps)"},
	{env: envSigningKid, flag: "command-signing-kid", shells: every, placeholder: "id",
		usage: "the id agents know that key by (Kanade-Sig-Kid); only together with " + envSigningKey},
	// What runs, and what it says.
	{env: "KANADE_WORKER", flag: "worker", def: "on", shells: ShellHTTP, placeholder: "on|off",
		usage: "run the worker (projector, scheduler) inside the HTTP server"},
	{env: "KANADE_LOG_LEVEL", flag: "log-level", def: "info", shells: every, placeholder: "level",
		usage: "debug, info, warn or error"},
	{env: "KANADE_LOG_FORMAT", flag: "log-format", def: "text", shells: every, placeholder: "text|json",
		usage: "log line format"},
	{env: "KANADE_DEMO", flag: "demo", def: "0", shells: onPrem, placeholder: "n",
		usage: "simulate n agents for a demo (0 = off)"},
	{env: "KANADE_DEMO_RUNS", flag: "demo-runs", shells: onPrem, placeholder: "job=duration,...",
		usage: "how long the simulated agents' runs of these jobs last, e.g. long-scan=10m,ping=0s (others: the job's profile, or about a second)"},
}

// Variables lists the environment variables shell reads, so that the
// packaging tests (deploy/) can check that every file setting one names a
// real setting of the shell it runs.
func Variables(shell Shell) []string {
	var out []string
	for _, s := range settings {
		if s.shells&shell != 0 {
			out = append(out, s.env)
		}
	}
	return out
}

// value is a setting's raw value after environment and flags.
type value struct {
	s        string
	set      bool // given by environment or flag
	fromFlag bool
}

// flagValue lets the flag package write into a value.
type flagValue struct {
	v        *value
	presence bool
}

func (f flagValue) String() string {
	if f.v == nil {
		return ""
	}
	return f.v.s
}

func (f flagValue) Set(s string) error {
	if f.presence {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		s = strconv.FormatBool(b)
	}
	*f.v = value{s: s, set: true, fromFlag: true}
	return nil
}

func (f flagValue) IsBoolFlag() bool { return f.presence }

// Parse reads the configuration of shell from lookup (os.LookupEnv) and
// args (os.Args: the program name, then flags). Flags override variables.
// With -h or -help it writes the settings to stderr and returns flag.ErrHelp.
func Parse(shell Shell, args []string, lookup func(string) (string, bool), stderr io.Writer) (Config, error) {
	name := "kanade"
	if len(args) > 0 {
		name = filepath.Base(args[0])
		args = args[1:]
	}
	values := map[string]*value{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mine []setting
	for _, s := range settings {
		if s.shells&shell == 0 {
			continue
		}
		mine = append(mine, s)
		v := &value{s: s.def}
		if env, ok := lookup(s.env); ok {
			*v = value{s: env, set: true}
			if s.presence {
				v.s = "true"
			}
		}
		values[s.env] = v
		if shell != ShellLambda {
			fs.Var(flagValue{v: v, presence: s.presence}, s.flag, s.usage)
		}
	}
	fs.Usage = func() { usage(stderr, name, shell, mine) }
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (settings are flags or KANADE_* variables; see -h)", fs.Arg(0))
	}
	return build(shell, values)
}

func usage(w io.Writer, name string, shell Shell, mine []setting) {
	fmt.Fprintf(w, "Usage: %s [flags]\n       %s %s [-kid id]   print a new command-signing key pair\n\n"+
		"Every flag has an environment variable; a flag overrides its variable.\n\n", name, name, KeygenCommand)
	for _, s := range mine {
		if s.presence {
			fmt.Fprintf(w, "  -%s\n", s.flag)
		} else {
			fmt.Fprintf(w, "  -%s %s\n", s.flag, s.placeholder)
		}
		def := ""
		if s.def != "" {
			def = fmt.Sprintf(" (default %q)", s.def)
		}
		fmt.Fprintf(w, "        %s%s\n        %s\n", s.env, def, s.usage)
	}
}

// build converts and validates the raw values.
func build(shell Shell, values map[string]*value) (Config, error) {
	var errs []error
	str := func(env string) string {
		if v, ok := values[env]; ok {
			return strings.TrimSpace(v.s)
		}
		return ""
	}
	// name is how an error names a setting: its variable, and its flag
	// where the shell has flags.
	name := func(env string) string {
		if shell != ShellLambda {
			return env + " (-" + flagName(env) + ")"
		}
		return env
	}
	bad := func(env, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name(env), fmt.Sprintf(format, a...)))
	}
	addr := func(env string, allowNegative bool) string {
		a := str(env)
		if _, ok := values[env]; !ok {
			return ""
		}
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			bad(env, "want host:port, got %q", a)
			return a
		}
		p, err := strconv.Atoi(port)
		if err != nil || p > 65535 || p < 0 && !(allowNegative && p == -1) {
			bad(env, "invalid port %q", port)
		}
		return a
	}
	cfg := Config{
		HTTPAddr:           addr("KANADE_HTTP_ADDR", false),
		AdminAddr:          addr("KANADE_ADMIN_ADDR", false),
		NATSListen:         addr("KANADE_NATS_LISTEN", true),
		DataDir:            str("KANADE_DATA_DIR"),
		DB:                 str("KANADE_DB"),
		DBAuthToken:        str("KANADE_DB_AUTH_TOKEN"),
		NATSURL:            str("KANADE_NATS_URL"),
		NATSToken:          str("KANADE_NATS_TOKEN"),
		AuthStaticToken:    str("KANADE_AUTH_STATIC_TOKEN"),
		JWTSecret:          str("KANADE_JWT_SECRET"),
		BootstrapAdminUser: str("KANADE_BOOTSTRAP_ADMIN_USER"),
		LogFormat:          strings.ToLower(str("KANADE_LOG_FORMAT")),
		NATSReplicas:       1,
	}
	if shell&onPrem != 0 && cfg.DataDir == "" {
		bad("KANADE_DATA_DIR", "must not be empty")
	}
	if shell&onPrem != 0 && cfg.DB == "" {
		cfg.DB = filepath.Join(cfg.DataDir, "kanade.db")
	}
	if v := values["KANADE_BOOTSTRAP_ADMIN_PASSWORD"]; v != nil && v.s != "" {
		// Not trimmed: spaces may belong to a password. Its rules are
		// checked where it is hashed (the API shells' start).
		cfg.BootstrapAdminPassword = v.s
		if !kanade.ValidUsername(cfg.BootstrapAdminUser) {
			bad("KANADE_BOOTSTRAP_ADMIN_USER", "%s, got %q", kanade.RuleUsername, kanade.Clip(cfg.BootstrapAdminUser))
		}
	}
	if v := values["KANADE_AUTH_DISABLE"]; v != nil && v.set {
		// The variable counts by presence; the flag is a boolean that
		// overrides it either way.
		cfg.AuthDisabled = v.s == "true" || !v.fromFlag
	}
	if _, ok := values["KANADE_NATS_REPLICAS"]; ok {
		n, err := strconv.Atoi(str("KANADE_NATS_REPLICAS"))
		if err != nil || n < 1 || n > 5 {
			bad("KANADE_NATS_REPLICAS", "want an integer from 1 to 5, got %q", str("KANADE_NATS_REPLICAS"))
		}
		cfg.NATSReplicas = n
	}
	d, err := time.ParseDuration(str("KANADE_STALE_THRESHOLD"))
	if err != nil || d <= 0 {
		bad("KANADE_STALE_THRESHOLD", "want a positive duration such as 2m or 90s, got %q", str("KANADE_STALE_THRESHOLD"))
	}
	cfg.StaleThreshold = d
	if d, err := time.ParseDuration(str("KANADE_PROJECTION_STALL")); err != nil || d <= 0 {
		bad("KANADE_PROJECTION_STALL", "want a positive duration such as 2m or 90s, got %q", str("KANADE_PROJECTION_STALL"))
	} else {
		cfg.ProjectionStall = d
	}
	if _, ok := values["KANADE_PROBE_MAX_AGE"]; ok {
		if d, err := time.ParseDuration(str("KANADE_PROBE_MAX_AGE")); err != nil || d < 0 || d > time.Minute {
			bad("KANADE_PROBE_MAX_AGE", "want a duration from 0s to 1m such as 0s or 2s, got %q", str("KANADE_PROBE_MAX_AGE"))
		} else {
			cfg.ProbeMaxAge = d
		}
	}
	if _, ok := values["KANADE_PROJECTOR_MAX_BYTES"]; ok {
		n, err := parseBytes(str("KANADE_PROJECTOR_MAX_BYTES"))
		if err != nil || n < 1<<20 {
			bad("KANADE_PROJECTOR_MAX_BYTES", "want a size of at least 1MiB such as 64MiB or 1GiB, got %q", str("KANADE_PROJECTOR_MAX_BYTES"))
		}
		cfg.ProjectorMaxBytes = n
	}
	if _, ok := values["KANADE_AGENT_PRUNE_DAYS"]; ok {
		n, err := strconv.Atoi(str("KANADE_AGENT_PRUNE_DAYS"))
		if err != nil || n < 0 {
			bad("KANADE_AGENT_PRUNE_DAYS", "want a number of days >= 0 (0 = never), got %q", str("KANADE_AGENT_PRUNE_DAYS"))
		}
		cfg.AgentPruneDays = min(n, kanade.MaxAgentPruneDays)
	}
	r, err := strconv.ParseFloat(str("KANADE_STALE_DEGRADED_RATIO"), 64)
	if err != nil || !(r > 0 && r <= 1) {
		bad("KANADE_STALE_DEGRADED_RATIO", "want a ratio in (0, 1], such as 1.0 or 0.5, got %q", str("KANADE_STALE_DEGRADED_RATIO"))
	}
	cfg.StaleDegradedRatio = r
	if _, ok := values["KANADE_WORKER"]; ok {
		switch strings.ToLower(str("KANADE_WORKER")) {
		case "on":
			cfg.Worker = true
		case "off":
		default:
			bad("KANADE_WORKER", "want on or off, got %q", str("KANADE_WORKER"))
		}
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(str("KANADE_LOG_LEVEL"))); err != nil {
		bad("KANADE_LOG_LEVEL", "want debug, info, warn or error, got %q", str("KANADE_LOG_LEVEL"))
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		bad("KANADE_LOG_FORMAT", "want text or json, got %q", cfg.LogFormat)
	}
	if _, ok := values["KANADE_DEMO"]; ok {
		n, err := strconv.Atoi(str("KANADE_DEMO"))
		if err != nil || n < 0 {
			bad("KANADE_DEMO", "want a number of agents >= 0, got %q", str("KANADE_DEMO"))
		}
		cfg.Demo = n
	}
	if runs, err := parseDemoRuns(str("KANADE_DEMO_RUNS")); err != nil {
		bad("KANADE_DEMO_RUNS", "%v", err)
	} else {
		cfg.DemoRuns = runs
	}
	if signer, err := commandSigner(str(envSigningKey), str(envSigningKid), name); err != nil {
		errs = append(errs, err)
	} else {
		cfg.CommandSigner = signer
	}
	if shell == ShellLambda {
		// Nothing persists on Lambda: no embedded NATS, no SQLite file that
		// outlives the sandbox, no generated token.
		if cfg.DB == "" {
			errs = append(errs, errors.New("KANADE_DB is required on Lambda (usually a libsql:// URL)"))
		}
		if cfg.NATSURL == "" {
			errs = append(errs, errors.New("KANADE_NATS_URL is required on Lambda (it may be down at a cold start: the API then reports NATS as down)"))
		}
		if !cfg.AuthDisabled && cfg.AuthStaticToken == "" && cfg.JWTSecret == "" {
			errs = append(errs, errors.New("set KANADE_AUTH_STATIC_TOKEN or KANADE_JWT_SECRET on Lambda (or KANADE_AUTH_DISABLE to run open): nothing persists there to keep a generated token"))
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// The command-signing pair.
const (
	envSigningKey = "KANADE_COMMAND_SIGNING_KEY"
	envSigningKid = "KANADE_COMMAND_SIGNING_KID"
)

// commandSigner builds the signer of the key and kid settings, both or
// neither. Half a pair is refused at start rather than published unsigned
// (upstream's stage-2 choice): a backend an operator meant to sign must not
// quietly leave the fleet unsigned, and a key must never sign under a
// guessed id, which agents would report as a forgery. name names a setting
// in the error.
func commandSigner(key, kid string, name func(env string) string) (*sign.Signer, error) {
	switch {
	case key == "" && kid == "":
		return nil, nil
	case key == "" || kid == "":
		set, unset := envSigningKey, envSigningKid
		if key == "" {
			set, unset = unset, set
		}
		return nil, fmt.Errorf("%s and %s go together: %s is set but %s is not; set both to sign commands, or neither to publish them unsigned",
			name(envSigningKey), name(envSigningKid), set, unset)
	}
	s, err := sign.New(key, kid)
	switch {
	case errors.Is(err, sign.ErrKid):
		return nil, fmt.Errorf("%s: %w", name(envSigningKid), err)
	case err != nil:
		return nil, fmt.Errorf("%s: %w (the keygen subcommand prints a valid one)", name(envSigningKey), err)
	}
	return s, nil
}

// parseDemoRuns reads KANADE_DEMO_RUNS: comma-separated job=duration pairs
// (spaces around either allowed), each job id a valid KV key and each
// duration non-negative; nil for an empty text.
func parseDemoRuns(s string) (map[string]time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	runs := map[string]time.Duration{}
	for pair := range strings.SplitSeq(s, ",") {
		job, text, ok := strings.Cut(pair, "=")
		job, text = strings.TrimSpace(job), strings.TrimSpace(text)
		if !ok || !kanade.ValidKVKey(job) {
			return nil, fmt.Errorf("want job=duration pairs such as long-scan=10m,ping=0s, got %q", strings.TrimSpace(pair))
		}
		d, err := time.ParseDuration(text)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("want a duration >= 0 such as 10m for job %s, got %q", job, text)
		}
		if _, dup := runs[job]; dup {
			return nil, fmt.Errorf("job %s given twice", job)
		}
		runs[job] = d
	}
	return runs, nil
}

// parseBytes reads a size: a whole number of bytes with an optional unit B,
// KiB, MiB or GiB (any case).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(strings.ToLower(s), u.suffix) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * mult, nil
}

func flagName(env string) string {
	for _, s := range settings {
		if s.env == env {
			return s.flag
		}
	}
	return strings.ToLower(env)
}
