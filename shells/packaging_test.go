package shells_test

// The packaging files (template.yaml, Dockerfile, compose.yaml, the systemd
// units) are read by tools this repository's CI may not have (sam, docker,
// systemd). These tests parse them and hold them to what the shells need,
// so that a renamed variable, a root user or a lost health check fails here
// first; scripts/ci-deploy.sh runs the official linters as well where they
// are installed.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/kanade-fleet/backend/shells/internal/app"
)

// root is the repository root, seen from this package's directory.
const root = ".."

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cfn converts a YAML node of a CloudFormation template to plain values,
// turning the short-form tags into their long form (!Ref x is
// {"Ref": x}, !GetAtt a.b is {"Fn::GetAtt": [a, b]}, !Sub s is
// {"Fn::Sub": s}), as CloudFormation reads them.
func cfn(t *testing.T, n ast.Node) any {
	t.Helper()
	switch n := n.(type) {
	case nil:
		return nil
	case *ast.DocumentNode:
		return cfn(t, n.Body)
	case *ast.MappingNode:
		out := map[string]any{}
		for _, kv := range n.Values {
			out[kv.Key.String()] = cfn(t, kv.Value)
		}
		return out
	case *ast.MappingValueNode:
		return map[string]any{n.Key.String(): cfn(t, n.Value)}
	case *ast.SequenceNode:
		out := make([]any, 0, len(n.Values))
		for _, v := range n.Values {
			out = append(out, cfn(t, v))
		}
		return out
	case *ast.TagNode:
		v := cfn(t, n.Value)
		switch tag := strings.TrimPrefix(n.Start.Value, "!"); tag {
		case "Ref", "Condition":
			return map[string]any{tag: v}
		case "GetAtt":
			if s, ok := v.(string); ok {
				res, attr, _ := strings.Cut(s, ".")
				v = []any{res, attr}
			}
			return map[string]any{"Fn::GetAtt": v}
		default:
			return map[string]any{"Fn::" + tag: v}
		}
	case *ast.LiteralNode:
		return n.Value.Value
	case ast.ScalarNode:
		return n.GetValue()
	}
	t.Fatalf("template: unexpected YAML node %T at %s", n, n.GetToken().Position)
	return nil
}

type template struct {
	Parameters, Conditions, Resources, Outputs, Globals map[string]any
	Transform, Version                                  string
}

func loadTemplate(t *testing.T) template {
	f, err := parser.ParseBytes(read(t, "template.yaml"), 0)
	if err != nil || len(f.Docs) != 1 {
		t.Fatalf("template.yaml: %v", err)
	}
	doc, ok := cfn(t, f.Docs[0]).(map[string]any)
	if !ok {
		t.Fatal("template.yaml is not a mapping")
	}
	m := func(k string) map[string]any { v, _ := doc[k].(map[string]any); return v }
	s := func(k string) string { v, _ := doc[k].(string); return v }
	return template{Parameters: m("Parameters"), Conditions: m("Conditions"), Resources: m("Resources"),
		Outputs: m("Outputs"), Globals: m("Globals"), Transform: s("Transform"), Version: s("AWSTemplateFormatVersion")}
}

// walk calls fn on every value of the tree.
func walk(v any, fn func(any)) {
	fn(v)
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			walk(e, fn)
		}
	case []any:
		for _, e := range v {
			walk(e, fn)
		}
	}
}

func TestTheSAMTemplateDeploysTheBootstrapAsBuilt(t *testing.T) {
	tpl := loadTemplate(t)
	if tpl.Version != "2010-09-09" || tpl.Transform != "AWS::Serverless-2016-10-31" {
		t.Fatalf("version %q, transform %q: want a SAM template", tpl.Version, tpl.Transform)
	}
	var fns []string
	for name, r := range tpl.Resources {
		if r.(map[string]any)["Type"] == "AWS::Serverless::Function" {
			fns = append(fns, name)
		}
	}
	if len(fns) != 1 {
		t.Fatalf("functions %v, want one", fns)
	}
	fn := tpl.Resources[fns[0]].(map[string]any)
	props := map[string]any{}
	if g, ok := tpl.Globals["Function"].(map[string]any); ok {
		for k, v := range g {
			props[k] = v
		}
	}
	for k, v := range fn["Properties"].(map[string]any) {
		props[k] = v
	}
	for key, want := range map[string]any{
		"Runtime": "provided.al2023", "Handler": "bootstrap", "Architectures": []any{"arm64"},
		// What `just lambda` writes for that architecture.
		"CodeUri": "bin/lambda/arm64/bootstrap.zip",
	} {
		if fmt.Sprint(props[key]) != fmt.Sprint(want) {
			t.Errorf("function %s = %v, want %v", key, props[key], want)
		}
	}
	if to, _ := props["Timeout"].(uint64); to == 0 || to > 30 {
		t.Errorf("Timeout %v: API Gateway answers 503 after 30 s whatever the function does", props["Timeout"])
	}

	// The routes: the root and everything under it, to one HTTP API.
	routes := map[string]bool{}
	for _, e := range props["Events"].(map[string]any) {
		e := e.(map[string]any)
		p := e["Properties"].(map[string]any)
		if e["Type"] == "HttpApi" {
			routes[fmt.Sprint(p["Method"], " ", p["Path"])] = true
		}
	}
	for _, want := range []string{"ANY /", "ANY /{proxy+}"} {
		if !routes[want] {
			t.Errorf("no HttpApi event %s (have %v)", want, routes)
		}
	}

	// The environment: real settings of the Lambda shell, the required
	// ones there, and no secret written into the template.
	vars := props["Environment"].(map[string]any)["Variables"].(map[string]any)
	known := app.Variables(app.ShellLambda)
	for name, v := range vars {
		if !slices.Contains(known, name) {
			t.Errorf("environment %s: not a setting of the Lambda shell", name)
		}
		secret := regexp.MustCompile(`TOKEN|SECRET|SIGNING_KEY`).MatchString(name)
		var resolved bool
		walk(v, func(x any) {
			if s, ok := x.(string); ok && strings.Contains(s, "{{resolve:secretsmanager:") {
				resolved = true
			}
		})
		if secret && !resolved {
			t.Errorf("environment %s = %v: a secret must come from Secrets Manager", name, v)
		}
	}
	for _, name := range []string{"KANADE_DB", "KANADE_NATS_URL"} {
		if vars[name] == nil {
			t.Errorf("environment has no %s: the Lambda shell refuses to start without it", name)
		}
	}
	if vars["KANADE_AUTH_STATIC_TOKEN"] == nil && vars["KANADE_JWT_SECRET"] == nil {
		t.Error("environment sets no credential: the Lambda shell refuses to start open unless told")
	}
	for _, name := range []string{"KANADE_DB", "KANADE_NATS_URL"} {
		ref, _ := vars[name].(map[string]any)["Ref"].(string)
		p, _ := tpl.Parameters[ref].(map[string]any)
		if p["Type"] != "AWS::SSM::Parameter::Value<String>" {
			t.Errorf("%s = %v: want a parameter read from SSM", name, vars[name])
		}
	}
}

func TestEveryReferenceInTheSAMTemplateResolves(t *testing.T) {
	tpl := loadTemplate(t)
	defined := func(name string) bool {
		_, p := tpl.Parameters[name]
		_, r := tpl.Resources[name]
		return p || r || strings.HasPrefix(name, "AWS::")
	}
	used := map[string]bool{}
	sub := regexp.MustCompile(`\$\{([^}!]+)\}`)
	for _, part := range []map[string]any{tpl.Resources, tpl.Outputs, tpl.Conditions, tpl.Globals} {
		walk(part, func(v any) {
			m, ok := v.(map[string]any)
			if !ok {
				return
			}
			if ref, ok := m["Ref"].(string); ok {
				used[ref] = true
				if !defined(ref) {
					t.Errorf("!Ref %s: no such parameter or resource", ref)
				}
			}
			if s, ok := m["Fn::Sub"].(string); ok {
				for _, g := range sub.FindAllStringSubmatch(s, -1) {
					name, _, _ := strings.Cut(g[1], ".")
					used[name] = true
					if !defined(name) {
						t.Errorf("!Sub ${%s}: no such parameter or resource", g[1])
					}
				}
			}
			if args, ok := m["Fn::If"].([]any); ok {
				if c, _ := args[0].(string); tpl.Conditions[c] == nil {
					t.Errorf("!If %v: no such condition", args[0])
				}
			}
			if c, ok := m["Condition"].(string); ok && tpl.Conditions[c] == nil {
				t.Errorf("Condition %s: no such condition", c)
			}
		})
	}
	for name := range tpl.Parameters {
		if !used[name] {
			t.Errorf("parameter %s is never used", name)
		}
	}
}

// dockerfile is a Dockerfile as instructions, continuation lines joined.
type instruction struct {
	cmd, args string
	line      int
}

func parseDockerfile(t *testing.T) []instruction {
	var out []instruction
	sc := bufio.NewScanner(strings.NewReader(string(read(t, "Dockerfile"))))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		if more, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	return out
}

func TestTheImageIsStaticNonRootAndChecksItsOwnHealth(t *testing.T) {
	ins := parseDockerfile(t)
	var stages []string
	var final []instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			name := ""
			if len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") {
				name = f[len(f)-1]
			}
			stages = append(stages, name)
			final = nil
		}
		final = append(final, in)
	}
	if len(stages) < 2 {
		t.Fatalf("stages %v: want a build stage and a runtime stage", stages)
	}
	var build strings.Builder
	for _, in := range ins {
		if in.cmd == "RUN" {
			build.WriteString(in.args + "\n")
		}
		if in.cmd == "COPY" && strings.Contains(in.args, "--from=") {
			from := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args)[1]
			if !slices.Contains(stages, from) {
				t.Errorf("line %d: COPY --from=%s: no such stage (%v)", in.line, from, stages)
			}
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./shells/http", "./shells/worker"} {
		if !strings.Contains(build.String(), want) {
			t.Errorf("the build stage does not use %s", want)
		}
	}
	base := strings.Fields(final[0].args)
	if img := base[len(base)-1]; !strings.HasPrefix(img, "gcr.io/distroless/static") && img != "scratch" {
		t.Errorf("runtime base %s: want distroless static or scratch (the binaries are static)", img)
	}
	got := map[string][]instruction{}
	for _, in := range final {
		got[in.cmd] = append(got[in.cmd], in)
	}
	if u := got["USER"]; len(u) == 0 {
		t.Error("the runtime stage sets no USER: it would run as root")
	} else if user, _, _ := strings.Cut(u[len(u)-1].args, ":"); user == "root" || user == "0" {
		t.Errorf("USER %s: runs as root", u[len(u)-1].args)
	}
	if h := got["HEALTHCHECK"]; len(h) != 1 || !strings.Contains(h[0].args, `CMD ["/usr/local/bin/kanade-http", "healthcheck"]`) {
		t.Errorf("HEALTHCHECK %v: want the binary's healthcheck subcommand in exec form (no shell in the image)", h)
	}
	if e := got["ENTRYPOINT"]; len(e) != 1 || !strings.HasPrefix(e[0].args, `["/usr/local/bin/kanade-http"`) {
		t.Errorf("ENTRYPOINT %v: want the HTTP shell in exec form, so SIGTERM reaches it", e)
	}
	if s := got["STOPSIGNAL"]; len(s) == 1 && s[0].args != "SIGTERM" {
		t.Errorf("STOPSIGNAL %s: the shells drain on SIGTERM", s[0].args)
	}
	var exposed []string
	for _, in := range got["EXPOSE"] {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	for _, port := range []string{"8080", "9090"} {
		if !slices.Contains(exposed, port) {
			t.Errorf("port %s not exposed (%v)", port, exposed)
		}
	}
	onPrem := append(app.Variables(app.ShellHTTP), app.Variables(app.ShellWorker)...)
	for _, in := range got["ENV"] {
		for _, kv := range strings.Fields(in.args) {
			name, _, _ := strings.Cut(kv, "=")
			if !slices.Contains(onPrem, name) {
				t.Errorf("line %d: ENV %s is not a setting of the shells", in.line, name)
			}
		}
	}
	if !strings.Contains(string(read(t, ".dockerignore")), ".git") {
		t.Error(".dockerignore lets .git into the build context")
	}
}

func TestComposeRunsNATSSqldTheAPIAndAWorker(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			StopGracePeriod string `yaml:"stop_grace_period"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(read(t, "compose.yaml"), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	nats, sqld := c.Services["nats"], c.Services["sqld"]
	if !strings.HasPrefix(nats.Image, "nats:") || !slices.Contains(nats.Command, "--jetstream") || nats.Healthcheck == nil {
		t.Errorf("nats: %+v: want the NATS image with JetStream on and a health check", nats)
	}
	if !strings.Contains(sqld.Image, "libsql-server") {
		t.Errorf("sqld: image %q", sqld.Image)
	}
	for name, shell := range map[string]app.Shell{"kanade": app.ShellHTTP, "worker": app.ShellWorker} {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("no %s service", name)
			continue
		}
		bin := map[app.Shell]string{app.ShellHTTP: "kanade-http", app.ShellWorker: "kanade-worker"}[shell]
		if s.Build == nil {
			t.Errorf("%s: not built from the Dockerfile", name)
		}
		if shell == app.ShellWorker && !slices.Equal(s.Entrypoint, []string{"/usr/local/bin/kanade-worker"}) {
			t.Errorf("worker entrypoint %v", s.Entrypoint)
		}
		if s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, []string{"CMD", "/usr/local/bin/" + bin, "healthcheck", "/readyz"}) {
			t.Errorf("%s: health check %+v, want its readiness through the healthcheck subcommand", name, s.Healthcheck)
		}
		if d, err := time.ParseDuration(s.StopGracePeriod); err != nil || d <= app.ShutdownTimeout {
			t.Errorf("%s: stop_grace_period %q: the shutdown takes up to %v", name, s.StopGracePeriod, app.ShutdownTimeout)
		}
		known := app.Variables(shell)
		for v := range s.Environment {
			if !slices.Contains(known, v) {
				t.Errorf("%s: %s is not a setting of %s", name, v, bin)
			}
		}
		if got := s.Environment["KANADE_NATS_URL"]; got != "nats://nats:4222" {
			t.Errorf("%s: KANADE_NATS_URL %q, want the nats service", name, got)
		}
		if got := s.Environment["KANADE_DB"]; got != "http://sqld:8080" {
			t.Errorf("%s: KANADE_DB %q, want the sqld service", name, got)
		}
		if s.DependsOn["nats"].Condition != "service_healthy" {
			t.Errorf("%s: starts before NATS is healthy", name)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: port %s published on every address; the API needs a TLS proxy in front", name, p)
			}
		}
	}
	if w := c.Services["kanade"].Environment["KANADE_WORKER"]; w != "off" {
		t.Errorf("kanade: KANADE_WORKER %q: the worker runs as its own service", w)
	}
}

// unit is a systemd unit file: section, then key, then every value.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, name string) unit {
	u := unit{}
	section := ""
	for line := range strings.Lines(string(read(t, name))) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: %q", name, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func TestTheSystemdUnitsAreHardenedAndStopGracefully(t *testing.T) {
	users := string(read(t, "deploy/systemd/kanade.sysusers"))
	for file, shell := range map[string]app.Shell{"kanade.service": app.ShellHTTP, "kanade-worker.service": app.ShellWorker} {
		t.Run(file, func(t *testing.T) {
			u := parseUnit(t, "deploy/systemd/"+file)
			get := func(k string) string { return u.get("Service", k) }
			bin := map[app.Shell]string{app.ShellHTTP: "kanade-http", app.ShellWorker: "kanade-worker"}[shell]
			if got := get("ExecStart"); got != "/usr/local/bin/"+bin {
				t.Errorf("ExecStart %q", got)
			}
			user := get("User")
			if user == "" || user == "root" || !regexp.MustCompile(`(?m)^u\s+`+regexp.QuoteMeta(user)+`\s`).MatchString(users) {
				t.Errorf("User %q: want the dedicated user kanade.sysusers creates", user)
			}
			state := get("StateDirectory")
			if state == "" || !slices.Contains(u["Service"]["Environment"], "KANADE_DATA_DIR=%S/"+state) {
				t.Errorf("StateDirectory %q, Environment %v: want the data folder in the state directory", state, u["Service"]["Environment"])
			}
			if get("KillSignal") != "SIGTERM" {
				t.Errorf("KillSignal %q", get("KillSignal"))
			}
			stop, err := time.ParseDuration(get("TimeoutStopSec"))
			if err != nil || stop <= app.ShutdownTimeout {
				t.Errorf("TimeoutStopSec %q: the graceful shutdown takes up to %v", get("TimeoutStopSec"), app.ShutdownTimeout)
			}
			for key, want := range map[string]string{
				"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
				"PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
				"MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictNamespaces": "yes",
				"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
				"SystemCallArchitectures": "native", "Restart": "on-failure",
			} {
				if vs, ok := u["Service"][key]; !ok || vs[len(vs)-1] != want {
					t.Errorf("%s = %v, want %q", key, vs, want)
				}
			}
			if f := u["Service"]["SystemCallFilter"]; !slices.Contains(f, "@system-service") {
				t.Errorf("SystemCallFilter %v", f)
			}
			if u.get("Install", "WantedBy") != "multi-user.target" {
				t.Error("not enabled for multi-user.target")
			}
			// The example settings file next to it names real settings.
			env := strings.TrimPrefix(get("EnvironmentFile"), "-")
			example := "deploy/systemd/" + filepath.Base(env)
			known := app.Variables(shell)
			for line := range strings.Lines(string(read(t, example))) {
				line = strings.TrimPrefix(strings.TrimSpace(line), "#")
				name, _, ok := strings.Cut(line, "=")
				if ok && strings.HasPrefix(name, "KANADE_") && !slices.Contains(known, name) {
					t.Errorf("%s: %s is not a setting of %s", example, name, bin)
				}
			}
		})
	}
}

// TestTheGracefulBoundsAgree: the shells' own shutdown bound must fit in
// every supervisor's (systemd, compose) patience, and the figures the files
// state in words must be the code's.
func TestTheGracefulBoundsAgree(t *testing.T) {
	secs := strconv.Itoa(int(app.ShutdownTimeout.Seconds())) + " s"
	for _, f := range []string{"deploy/systemd/kanade.service", "deploy/systemd/kanade-worker.service", "compose.yaml"} {
		if !strings.Contains(string(read(t, f)), secs) {
			t.Errorf("%s does not say the shutdown takes up to %s", f, secs)
		}
	}
}
