package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend/bus/bustest"
)

const token = "lambda-test-token"

// Synthetic events as the three front doors send them. %s are the path and
// the Authorization header value.
const (
	apiGatewayV1 = `{"resource":"/{proxy+}","path":%q,"httpMethod":"GET",
		"headers":{"Accept":"*/*","Authorization":%q},
		"multiValueHeaders":{"Accept":["*/*"],"Authorization":[%q]},
		"requestContext":{"accountId":"123456789012","resourceId":"abc","stage":"prod","requestId":"r-1",
			"identity":{"sourceIp":"127.0.0.1"},"httpMethod":"GET","path":"/prod/x"},
		"body":null,"isBase64Encoded":false}`
	apiGatewayV2 = `{"version":"2.0","routeKey":"$default","rawPath":%q,"rawQueryString":"",
		"headers":{"accept":"*/*","authorization":%q},
		"requestContext":{"accountId":"123456789012","apiId":"api","domainName":"api.example","domainPrefix":"api",
			"http":{"method":"GET","path":"/x","protocol":"HTTP/1.1","sourceIp":"127.0.0.1","userAgent":"test"},
			"requestId":"r-2","routeKey":"$default","stage":"$default","time":"20/Jun/2026:01:02:03 +0000","timeEpoch":0},
		"isBase64Encoded":false}`
	alb = `{"requestContext":{"elb":{"targetGroupArn":"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kanade/0123456789abcdef"}},
		"httpMethod":"GET","path":%q,"multiValueQueryStringParameters":{},
		"multiValueHeaders":{"accept":["*/*"],"authorization":[%q],"host":["kanade.example"]},
		"body":"","isBase64Encoded":false}`
	// albSingle is a target group with multi-value headers off, the ALB
	// default.
	albSingle = `{"requestContext":{"elb":{"targetGroupArn":"arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kanade/0123456789abcdef"}},
		"httpMethod":"GET","path":%q,"queryStringParameters":{},
		"headers":{"accept":"*/*","authorization":%q,"host":"kanade.example"},
		"body":"","isBase64Encoded":false}`
)

func event(kind, path, authorization string) []byte {
	switch kind {
	case "API Gateway v1":
		return []byte(fmt.Sprintf(apiGatewayV1, path, authorization, authorization))
	case "API Gateway v2":
		return []byte(fmt.Sprintf(apiGatewayV2, path, authorization))
	case "ALB":
		return []byte(fmt.Sprintf(alb, path, authorization))
	case "ALB single":
		return []byte(fmt.Sprintf(albSingle, path, authorization))
	}
	panic(kind)
}

type response struct {
	StatusCode      int    `json:"statusCode"`
	Body            string `json:"body"`
	IsBase64Encoded bool   `json:"isBase64Encoded"`
}

func testEnv(t *testing.T) map[string]string {
	nats := bustest.StartBootstrapped(t)
	return map[string]string{
		"KANADE_DB":                filepath.Join(t.TempDir(), "kanade.db"),
		"KANADE_NATS_URL":          nats.URL,
		"KANADE_AUTH_STATIC_TOKEN": token,
		"KANADE_LOG_LEVEL":         "warn",
	}
}

func TestEveryFrontDoorReachesTheSameHandler(t *testing.T) {
	env := testEnv(t)
	h, cleanup, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	lh := newGateway(h)

	tests := []struct {
		path, auth string
		wantCode   int
		wantBody   string // substring
	}{
		{"/health", "", http.StatusOK, "ok"},
		{"/api/health/fleet", "Bearer " + token, http.StatusOK, `"status":"unknown"`},
		{"/api/health/fleet", "", http.StatusUnauthorized, ""},
		{"/api/health/fleet", "Bearer wrong", http.StatusUnauthorized, ""},
	}
	for _, kind := range []string{"API Gateway v1", "API Gateway v2", "ALB", "ALB single"} {
		for _, tt := range tests {
			name := fmt.Sprintf("%s GET %s auth=%q", kind, tt.path, tt.auth)
			t.Run(name, func(t *testing.T) {
				out, err := lh.Invoke(context.Background(), event(kind, tt.path, tt.auth))
				if err != nil {
					t.Fatalf("invoke: %v", err)
				}
				var r response
				if err := json.Unmarshal(out, &r); err != nil {
					t.Fatalf("response %s: %v", out, err)
				}
				body := r.Body
				if r.IsBase64Encoded {
					b, err := base64.StdEncoding.DecodeString(body)
					if err != nil {
						t.Fatal(err)
					}
					body = string(b)
				}
				if r.StatusCode != tt.wantCode || !strings.Contains(body, tt.wantBody) {
					t.Errorf("got %d %q, want %d containing %q", r.StatusCode, body, tt.wantCode, tt.wantBody)
				}
			})
		}
	}
}

func TestStartUpRefusesWhatCannotWorkOnLambda(t *testing.T) {
	tests := []struct {
		name string
		drop string
		want string
	}{
		{"no credentials and auth not disabled", "KANADE_AUTH_STATIC_TOKEN", "KANADE_AUTH_STATIC_TOKEN or KANADE_JWT_SECRET"},
		{"no database", "KANADE_DB", "KANADE_DB is required"},
		{"no NATS", "KANADE_NATS_URL", "KANADE_NATS_URL is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"KANADE_DB": filepath.Join(t.TempDir(), "k.db"), "KANADE_NATS_URL": "nats://127.0.0.1:1",
				"KANADE_AUTH_STATIC_TOKEN": token}
			delete(env, tt.drop)
			_, _, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("newHandler = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestExplicitlyOpenLambdaServesWithoutToken(t *testing.T) {
	env := testEnv(t)
	delete(env, "KANADE_AUTH_STATIC_TOKEN")
	env["KANADE_AUTH_DISABLE"] = ""
	h, cleanup, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	out, err := newGateway(h).Invoke(context.Background(), event("API Gateway v2", "/api/health/fleet", ""))
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusOK {
		t.Errorf("open Lambda GET /api/health/fleet = %d %s, want 200", r.StatusCode, r.Body)
	}
}

// TestColdStartWithNATSDown: a cold start must not fail because NATS is
// down; the API serves from the database and the fleet rollup says NATS is
// down.
func TestColdStartWithNATSDown(t *testing.T) {
	env := testEnv(t)
	env["KANADE_NATS_URL"] = "nats://127.0.0.1:1" // nothing listens on port 1
	began := time.Now()
	h, cleanup, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("cold start with NATS down: %v", err)
	}
	defer cleanup()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("cold start took %v waiting for NATS", d)
	}
	for path, want := range map[string]int{"/api/health/fleet": http.StatusServiceUnavailable, "/api/agents": http.StatusOK} {
		out, err := newGateway(h).Invoke(context.Background(), event("API Gateway v2", path, "Bearer "+token))
		if err != nil {
			t.Fatal(err)
		}
		var r response
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		if r.StatusCode != want {
			t.Errorf("GET %s = %d %s, want %d", path, r.StatusCode, r.Body, want)
		}
		if path == "/api/health/fleet" && !strings.Contains(r.Body, "not connected") {
			t.Errorf("fleet body does not say NATS is not connected: %s", r.Body)
		}
	}
}

// invokeV2 sends one API Gateway v2 request from sourceIP and decodes the
// answer.
func invokeV2(t *testing.T, h http.Handler, method, path, authorization, sourceIP, body string) response {
	t.Helper()
	ev := map[string]any{
		"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
		"headers": map[string]string{"authorization": authorization, "content-type": "application/json"},
		"requestContext": map[string]any{"accountId": "123456789012", "apiId": "api", "domainName": "api.example",
			"http":      map[string]string{"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": sourceIP, "userAgent": "test"},
			"requestId": "r-3", "routeKey": "$default", "stage": "$default", "timeEpoch": 0},
		"body": body, "isBase64Encoded": false,
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	out, err := newGateway(h).Invoke(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBootstrapAdminLogsInOnLambda: with KANADE_BOOTSTRAP_ADMIN_* and a JWT
// secret, a cold start on an empty database creates the admin, who logs in
// through API Gateway; failed attempts are counted per source IP.
func TestBootstrapAdminLogsInOnLambda(t *testing.T) {
	env := testEnv(t)
	env["KANADE_JWT_SECRET"] = "lambda-jwt-secret-0123456789abcdef0123"
	env["KANADE_BOOTSTRAP_ADMIN_USER"] = "chief"
	env["KANADE_BOOTSTRAP_ADMIN_PASSWORD"] = "chief-password-1"
	h, cleanup, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	for i := range 10 {
		r := invokeV2(t, h, http.MethodPost, "/api/auth/login", "", "203.0.113.7", fmt.Sprintf(`{"username":"u%d","password":"guess"}`, i))
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s", i, r.StatusCode, r.Body)
		}
	}
	login := `{"username":"chief","password":"chief-password-1"}`
	if r := invokeV2(t, h, http.MethodPost, "/api/auth/login", "", "203.0.113.7", login); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("login from the guessing address: %d %s, want 429", r.StatusCode, r.Body)
	}
	r := invokeV2(t, h, http.MethodPost, "/api/auth/login", "", "198.51.100.1", login)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", r.StatusCode, r.Body)
	}
	var tok struct {
		Token        string `json:"token"`
		MustChangePW bool   `json:"must_change_pw"`
	}
	if err := json.Unmarshal([]byte(r.Body), &tok); err != nil || !tok.MustChangePW {
		t.Fatalf("login body %s (%v)", r.Body, err)
	}
	r = invokeV2(t, h, http.MethodGet, "/api/auth/me", "Bearer "+tok.Token, "198.51.100.1", "")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `"username":"chief"`) || !strings.Contains(r.Body, `"role":"admin"`) {
		t.Errorf("me: %d %s", r.StatusCode, r.Body)
	}
}

func TestABootstrapPasswordThatBreaksTheRulesStopsTheStart(t *testing.T) {
	env := testEnv(t)
	env["KANADE_BOOTSTRAP_ADMIN_PASSWORD"] = "short"
	_, _, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "KANADE_BOOTSTRAP_ADMIN_PASSWORD") || strings.Contains(err.Error(), "short\"") {
		t.Fatalf("newHandler = %v, want an error naming the variable, not quoting the password", err)
	}
}
