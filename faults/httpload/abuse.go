package httpload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"
)

// Check is one abuse or correctness check of the report.
type Check struct {
	Name string
	Pass bool
	// Measured says what was observed, in one line.
	Measured string
	// Details lists what went wrong (or, for a pass, notable observations).
	Details []string
}

const (
	oversizedBody   = 10 << 20
	oversizedHeader = 2 << 20
	// abuseTimeout is how long a hand-made request may take before it
	// counts as a hang.
	abuseTimeout = 30 * time.Second
)

// checkSlowHeaders opens a connection, sends a request line and one header
// byte per second, and measures when the server closes it. ReadHeaderTimeout
// should do it; anything still open after 15 s would let a few hundred such
// clients exhaust the server's descriptors.
func checkSlowHeaders(ctx context.Context, addr string) Check {
	const limit = 15 * time.Second
	c := Check{Name: "slow headers (1 byte/s)"}
	start := time.Now()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		c.Measured = fmt.Sprintf("dial: %v", err)
		return c
	}
	defer conn.Close()
	closed := make(chan string, 1)
	go func() {
		got, err := io.ReadAll(conn)
		first, _, _ := strings.Cut(string(got), "\r\n")
		if first == "" {
			first = "nothing"
		}
		closed <- fmt.Sprintf("received %s, then %v", first, errOrEOF(err))
	}()
	io.WriteString(conn, "GET /api/agents HTTP/1.1\r\nHost: x\r\n")
	header := "X-Slow: " + strings.Repeat("a", 64)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.NewTimer(limit + 5*time.Second)
	defer deadline.Stop()
	for i := 0; ; i++ {
		select {
		case how := <-closed:
			d := time.Since(start)
			c.Pass = d <= limit
			c.Measured = fmt.Sprintf("closed after %s (ReadHeaderTimeout %s; limit %s); %s",
				round(d), serverReadHeaderTimeout, limit, how)
			return c
		case <-tick.C:
			conn.Write([]byte{header[i%len(header)]})
		case <-deadline.C:
			c.Measured = fmt.Sprintf("still open after %s (limit %s)", round(time.Since(start)), limit)
			return c
		case <-ctx.Done():
			c.Measured = ctx.Err().Error()
			return c
		}
	}
}

func errOrEOF(err error) string {
	if err == nil {
		return "EOF"
	}
	return err.Error()
}

// checkSlowBody sends a PUT with an announced 100 000-byte body at one byte
// per second. The server must answer (huma's 5 s body read timeout gives
// 408) or close within its ReadTimeout, and never accept it (2xx) or fail
// (5xx).
func checkSlowBody(ctx context.Context, addr, token string) Check {
	limit := serverReadTimeout + 2*time.Second // scheduling slack on a busy machine
	head := "PUT /api/jobs/" + dummyParam + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := exchange(ctx, addr, head, trickle(ctx), limit+8*time.Second)
	c := Check{Name: "slow body (1 byte/s, PUT /api/jobs/{id})"}
	c.Pass = !r.hung && r.elapsed <= limit && (r.status == 0 || r.status >= 400 && r.status < 500)
	c.Measured = fmt.Sprintf("%s (ReadTimeout %s)", r, serverReadTimeout)
	return c
}

// checkOversizedBodies sends 10 MiB of JSON to every operation that
// declares a request body, once with Content-Length and once chunked (no
// length to refuse early on), expecting 413 (or 415 from one that does not
// take JSON); and 10 MiB with an undeclared method to
// every documented path, expecting the router's 405 (413 is as good).
// Never 2xx, 5xx or a hang.
func checkOversizedBodies(ctx context.Context, addr, token string, all []Route) Check {
	c := Check{Name: "oversized bodies (10 MiB)"}
	if len(all) == 0 {
		c.Measured = "no routes: the OpenAPI document could not be read"
		return c
	}
	type probe struct {
		label, method, path string
		chunked             bool
		want                []int
	}
	var probes []probe
	seen := map[string]bool{}
	for _, r := range all {
		if r.HasBody {
			// The probe is JSON: a route that takes another type may
			// refuse it for that before reading (an upload whose own
			// cap is above the probe's size can only do that).
			want := []int{http.StatusRequestEntityTooLarge}
			if !r.JSONBody {
				want = append(want, http.StatusUnsupportedMediaType)
			}
			probes = append(probes,
				probe{"Content-Length", r.Method, r.Path, false, want},
				probe{"chunked", r.Method, r.Path, true, want})
		}
		if !seen[r.Template] {
			seen[r.Template] = true
			if m := undeclaredMethod(all, r.Template); m != "" {
				probes = append(probes, probe{"wrong method", m, r.Path, false,
					[]int{http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge}})
			}
		}
	}
	var slowest time.Duration
	codes := map[int]int{}
	for _, p := range probes {
		head := p.method + " " + p.path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\n"
		body := filler(oversizedBody)
		if p.chunked {
			head += "Transfer-Encoding: chunked\r\n\r\n"
			body = func(w io.Writer) error {
				cw := httputil.NewChunkedWriter(w)
				if err := filler(oversizedBody)(cw); err != nil {
					return err
				}
				if err := cw.Close(); err != nil {
					return err
				}
				_, err := io.WriteString(w, "\r\n")
				return err
			}
		} else {
			head += fmt.Sprintf("Content-Length: %d\r\n\r\n", oversizedBody)
		}
		r := exchange(ctx, addr, head, body, abuseTimeout)
		slowest = max(slowest, r.elapsed)
		codes[r.status]++
		ok := false
		for _, w := range p.want {
			ok = ok || r.status == w
		}
		if !ok {
			c.Details = append(c.Details, fmt.Sprintf("%s %s (%s): %s, want %v", p.method, p.path, p.label, r, p.want))
		}
	}
	c.Pass = len(c.Details) == 0
	c.Measured = fmt.Sprintf("%d requests (%d body operations × Content-Length and chunked, %d paths with an undeclared method): %s; slowest %s",
		len(probes), countBody(all), len(seen), codeSummary(codes), round(slowest))
	return c
}

func countBody(all []Route) int {
	n := 0
	for _, r := range all {
		if r.HasBody {
			n++
		}
	}
	return n
}

// codeSummary renders status counts as "413×4, 405×12" (0 is "no answer").
func codeSummary(codes map[int]int) string {
	var parts []string
	for code := 100; code < 600; code++ {
		if n := codes[code]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d×%d", code, n))
		}
	}
	if n := codes[0]; n > 0 {
		parts = append(parts, fmt.Sprintf("no answer×%d", n))
	}
	return strings.Join(parts, ", ")
}

// checkOversizedHeaders sends a 2 MiB header, twice MaxHeaderBytes; net/http
// must answer 431 and not buffer it.
func checkOversizedHeaders(ctx context.Context, addr string) Check {
	head := "GET /api/agents HTTP/1.1\r\nHost: x\r\n"
	body := func(w io.Writer) error { // the rest of the header block
		if _, err := io.WriteString(w, "X-Big: "); err != nil {
			return err
		}
		if err := filler(oversizedHeader)(w); err != nil {
			return err
		}
		_, err := io.WriteString(w, "\r\n\r\n")
		return err
	}
	r := exchange(ctx, addr, head, body, abuseTimeout)
	return Check{
		Name:     "oversized header (2 MiB)",
		Pass:     r.status == http.StatusRequestHeaderFieldsTooLarge,
		Measured: fmt.Sprintf("%s (MaxHeaderBytes %d KiB)", r, serverMaxHeaderBytes>>10),
	}
}

// publicRoutes are the /api routes open to anyone: the version (api.md),
// the login (control.md §9), which answers without a token (with no
// body, a 4xx about the body, never 401), and the docs page, which holds
// no data and loads the document with the dashboard's token (issue 13).
var publicRoutes = map[string]bool{"/api/version": true, "/api/auth/login": true, "/api/docs": true}

// docRoutes are served under /api/ but are not operations of the document
// itself; api.md's rule 2 opens only /api/version, so the document needs
// the token too (the docs page is open: publicRoutes).
var docRoutes = []Route{
	{Method: http.MethodGet, Template: "/api/openapi.json", Path: "/api/openapi.json"},
	{Method: http.MethodGet, Template: "/api/openapi.yaml", Path: "/api/openapi.yaml"},
	{Method: http.MethodGet, Template: "/api/docs", Path: "/api/docs"},
	{Method: http.MethodGet, Template: "/api/openapi/schemas/{name}", Path: "/api/openapi/schemas/FleetHealth.json"},
}

// checkAuth requests every documented operation (and the document and docs
// routes) without a token and with a wrong one. Protected routes must answer
// 401 with a Bearer challenge and a body that does not echo the token;
// public ones must answer without asking for one.
func checkAuth(ctx context.Context, base string, all []Route) Check {
	c := Check{Name: "auth on every /api route"}
	if len(all) == 0 {
		c.Measured = "no routes: the OpenAPI document could not be read"
		return c
	}
	client := &http.Client{Timeout: abuseTimeout}
	wrong := "httpload-wrong-token-" + fmt.Sprint(time.Now().UnixNano())
	variants := []struct{ label, header string }{{"no token", ""}, {"wrong token", "Bearer " + wrong}}
	walk := append(append([]Route(nil), all...), docRoutes...)
	refused, open := 0, 0
	for _, r := range walk {
		for _, v := range variants {
			var body io.Reader
			if r.HasBody {
				body = strings.NewReader(`{}`)
			}
			req, err := http.NewRequestWithContext(ctx, r.Method, base+r.Path, body)
			if err != nil {
				c.Details = append(c.Details, fmt.Sprintf("%s %s: %v", r.Method, r.Path, err))
				continue
			}
			if v.header != "" {
				req.Header.Set("Authorization", v.header)
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := client.Do(req)
			if err != nil {
				c.Details = append(c.Details, fmt.Sprintf("%s %s (%s): %v", r.Method, r.Path, v.label, err))
				continue
			}
			got, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
			res.Body.Close()
			switch {
			case publicRoutes[r.Template]:
				if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden || res.StatusCode >= 500 {
					c.Details = append(c.Details, fmt.Sprintf("%s %s (%s): %d, want an answer without a token (public)", r.Method, r.Path, v.label, res.StatusCode))
				} else {
					open++
				}
			case res.StatusCode != http.StatusUnauthorized:
				c.Details = append(c.Details, fmt.Sprintf("%s %s (%s): %d, want 401", r.Method, r.Path, v.label, res.StatusCode))
			case !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer"):
				c.Details = append(c.Details, fmt.Sprintf("%s %s (%s): 401 without a Bearer challenge", r.Method, r.Path, v.label))
			case strings.Contains(string(got), wrong):
				c.Details = append(c.Details, fmt.Sprintf("%s %s (%s): the 401 body echoes the token", r.Method, r.Path, v.label))
			default:
				refused++
			}
		}
	}
	c.Pass = len(c.Details) == 0
	c.Measured = fmt.Sprintf("%d operations of the document + %d docs routes, each without and with a wrong token: %d answers 401 with a Bearer challenge, %d open (/api/version, /api/auth/login, /api/docs)",
		len(all), len(docRoutes), refused, open)
	return c
}

// fetchRoutes reads the OpenAPI document with the token.
func fetchRoutes(ctx context.Context, base, token string) ([]Route, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/openapi.json", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: abuseTimeout}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /api/openapi.json: %w", err)
	}
	defer res.Body.Close()
	doc, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /api/openapi.json: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/openapi.json: status %d", res.StatusCode)
	}
	rs, err := routes(doc)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("GET /api/openapi.json: no operations")
	}
	return rs, nil
}

// getJSON fetches path with the token into v, requiring 200.
func getJSON(ctx context.Context, base, token, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: abuseTimeout}).Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("GET %s: status %d: %s", path, res.StatusCode, b)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	return nil
}
