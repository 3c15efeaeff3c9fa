package handlers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/nats-io/nats.go/jetstream"
)

// objectsOf opens store with a connection of the test's own.
func (e *manageEnv) objectsOf(store string) jetstream.ObjectStore {
	e.t.Helper()
	os, err := e.nats.JS.ObjectStore(e.t.Context(), store)
	if err != nil {
		e.t.Fatal(err)
	}
	return os
}

func (e *manageEnv) getWith(path string, header ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.request(http.MethodGet, path, header...)
}

func (e *manageEnv) request(method, path string, header ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(method, path, nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// Both stores, every route: upload, list, download whole and in ranges,
// conditional, HEAD, replace, delete.
func TestObjectRoutes(t *testing.T) {
	e := newManageEnv(t, nil)
	for _, s := range []struct{ prefix, store string }{
		{"/api/app-packages", kanade.ObjectAppPackages}, {"/api/script-objects", kanade.ObjectScripts},
	} {
		t.Run(s.store, func(t *testing.T) {
			if got := strings.TrimSpace(e.must(http.StatusOK, http.MethodGet, s.prefix, "").Body.String()); got != "[]" {
				t.Errorf("empty listing = %s", got)
			}
			content := []byte("0123456789")
			ct, body := form(t, formPart{name: "note", value: "ignored"}, fileOf(content), formPart{name: "after", value: "ignored"})
			rec := e.send(http.MethodPost, s.prefix+"/webex/2025.03", ct, string(body))
			want := fmt.Sprintf(`{"name":"webex","version":"2025.03","size":10,"digest":%q}`, digestOf(content))
			if rec.Code != http.StatusOK || !bytes.Equal(bytes.TrimSpace(rec.Body.Bytes()), []byte(want)) {
				t.Fatalf("upload = %d %s, want %s", rec.Code, rec.Body, want)
			}
			got, err := e.objectsOf(s.store).GetBytes(t.Context(), "webex/2025.03")
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("stored %q %v", got, err)
			}
			ct2, body2 := form(t, fileOf([]byte("older")))
			e.must2(http.StatusOK, e.send(http.MethodPost, s.prefix+"/a-tool/0.41.0-beta.2", ct2, string(body2)))
			// An object written straight over NATS without a version is
			// left out of the listing.
			if _, err := e.objectsOf(s.store).PutBytes(t.Context(), "bare", []byte("x")); err != nil {
				t.Fatal(err)
			}
			var list []map[string]any
			if err := json.Unmarshal(e.must(http.StatusOK, http.MethodGet, s.prefix, "").Body.Bytes(), &list); err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 || list[0]["name"] != "a-tool" || list[0]["version"] != "0.41.0-beta.2" || list[1]["name"] != "webex" ||
				list[1]["size"] != 10.0 || list[1]["digest"] != digestOf(content) || list[1]["modified"] == nil {
				t.Errorf("listing = %v", list)
			}

			item := s.prefix + "/webex/2025.03"
			etag := `"` + digestOf(content) + `"`
			rec = e.getWith(item)
			if rec.Code != http.StatusOK || rec.Body.String() != string(content) || rec.Header().Get("ETag") != etag ||
				rec.Header().Get("Content-Length") != "10" || rec.Header().Get("Accept-Ranges") != "bytes" ||
				rec.Header().Get("Content-Type") != "application/octet-stream" ||
				rec.Header().Get("Content-Disposition") != `attachment; filename="webex-2025.03"` {
				t.Errorf("download = %d %q %v", rec.Code, rec.Body, rec.Header())
			}
			head := e.request(http.MethodHead, item)
			if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") != "10" || head.Header().Get("ETag") != etag {
				t.Errorf("HEAD = %d %q %v", head.Code, head.Body, head.Header())
			}
			for _, r := range []struct{ rng, body, cr string }{
				{"bytes=2-", "23456789", "bytes 2-9/10"}, {"bytes=2-4", "234", "bytes 2-4/10"},
				{"bytes=9-9", "9", "bytes 9-9/10"}, {"bytes=0-9", "0123456789", "bytes 0-9/10"},
			} {
				rec := e.getWith(item, "Range", r.rng)
				if rec.Code != http.StatusPartialContent || rec.Body.String() != r.body || rec.Header().Get("Content-Range") != r.cr ||
					rec.Header().Get("Content-Length") != fmt.Sprint(len(r.body)) {
					t.Errorf("Range %s = %d %q %v", r.rng, rec.Code, rec.Body, rec.Header())
				}
			}
			for _, rng := range []string{"bytes=-3", "bytes=10-", "bytes=3-2", "bytes=0-10", "items=0-1", "bytes=0-1,3-4", "bytes=a-", "bytes=1", "bytes="} {
				rec := e.getWith(item, "Range", rng)
				if rec.Code != http.StatusRequestedRangeNotSatisfiable || rec.Header().Get("Content-Range") != "bytes */10" {
					t.Errorf("Range %s = %d %v, want 416 with bytes */10", rng, rec.Code, rec.Header())
				}
			}
			for _, m := range []struct {
				value string
				want  int
			}{{etag, 200}, {"*", 200}, {`"x", ` + etag, 200}, {`"SHA-256=other"`, 412}, {digestOf(content), 412}} {
				if rec := e.getWith(item, "If-Match", m.value, "Range", "bytes=a"); m.want == 412 && rec.Code != 412 {
					t.Errorf("If-Match %s with a bad range = %d, want 412 (checked first)", m.value, rec.Code)
				}
				if rec := e.getWith(item, "If-Match", m.value); rec.Code != m.want {
					t.Errorf("If-Match %s = %d, want %d", m.value, rec.Code, m.want)
				}
			}

			// Replacing keeps one object under the name.
			ct3, body3 := form(t, fileOf([]byte("new bytes")))
			e.must2(http.StatusOK, e.send(http.MethodPost, item, ct3, string(body3)))
			if rec := e.getWith(item); rec.Body.String() != "new bytes" {
				t.Errorf("after replace = %q", rec.Body)
			}
			e.must(http.StatusNoContent, http.MethodDelete, item, "")
			e.must(http.StatusNotFound, http.MethodDelete, item, "")
			e.must(http.StatusNotFound, http.MethodGet, item, "")
			if rec := e.request(http.MethodHead, item); rec.Code != http.StatusNotFound {
				t.Errorf("HEAD of a deleted object = %d", rec.Code)
			}
		})
	}
	// An empty object stored over NATS: any range is 416.
	if _, err := e.objectsOf(kanade.ObjectScripts).PutBytes(t.Context(), "empty/1", nil); err != nil {
		t.Fatal(err)
	}
	if rec := e.getWith("/api/script-objects/empty/1", "Range", "bytes=0-"); rec.Code != 416 || rec.Header().Get("Content-Range") != "bytes */0" {
		t.Errorf("range of an empty object = %d %v", rec.Code, rec.Header())
	}
	if rec := e.getWith("/api/script-objects/empty/1"); rec.Code != 200 || rec.Header().Get("Content-Length") != "0" {
		t.Errorf("empty object = %d %v", rec.Code, rec.Header())
	}
}

// Hostile or malformed segments are refused before they reach a key, and
// refused uploads leave the stored object as it was.
func TestObjectUploadsRefuse(t *testing.T) {
	e := newManageEnv(t, nil)
	keep := []byte("keep me")
	ctOK, bodyOK := form(t, fileOf(keep))
	e.must2(http.StatusOK, e.send(http.MethodPost, "/api/script-objects/s/1", ctOK, string(bodyOK)))

	for _, seg := range []string{"%2E", "%2E%2E", "a%22b", "a%5Cb", "a%00b", "a%7Fb", "%E6%9D%B1", strings.Repeat("x", 129)} {
		for _, p := range []string{"/api/script-objects/" + seg + "/1", "/api/app-packages/s/" + seg} {
			for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodHead} {
				if rec := e.request(m, p); rec.Code != http.StatusBadRequest {
					t.Errorf("%s %s = %d, want 400", m, p, rec.Code)
				}
			}
			if rec := e.send(http.MethodPost, p, ctOK, string(bodyOK)); rec.Code != http.StatusBadRequest {
				t.Errorf("POST %s = %d, want 400", p, rec.Code)
			}
		}
	}
	// 128 + 128 bytes is over the store's 255-byte names: refused, not a 500.
	long := strings.Repeat("x", 128)
	if rec := e.send(http.MethodPost, "/api/app-packages/"+long+"/"+long, ctOK, string(bodyOK)); rec.Code != http.StatusBadRequest {
		t.Errorf("a 257-byte name = %d, want 400", rec.Code)
	}

	twoFiles, twoBody := form(t, fileOf([]byte("one")), fileOf([]byte("two")))
	emptyCT, emptyBody := form(t, fileOf(nil))
	noneCT, noneBody := form(t, formPart{name: "version", value: "1"})
	for _, c := range []struct {
		name, ct, body string
		want           int
	}{
		{"two file fields", twoFiles, string(twoBody), 400},
		{"an empty file", emptyCT, string(emptyBody), 400},
		{"no file field", noneCT, string(noneBody), 400},
		{"a truncated form", ctOK, string(bodyOK[:len(bodyOK)-8]), 400},
		{"no boundary", "multipart/form-data", string(bodyOK), 400},
		{"JSON", "application/json", `{}`, 415},
		{"octets", "application/octet-stream", "abc", 415},
		{"over 4 MiB", bigFormType, bigForm(t, 4<<20), 413},
	} {
		if rec := e.send(http.MethodPost, "/api/script-objects/s/1", c.ct, c.body); rec.Code != c.want {
			t.Errorf("%s = %d %s, want %d", c.name, rec.Code, clipBody(rec.Body.String()), c.want)
		}
	}
	// Exactly 4 MiB of body passes.
	if rec := e.send(http.MethodPost, "/api/script-objects/big/1", bigFormType, bigForm(t, 4<<20-int64(bigFormOverhead(t)))); rec.Code != http.StatusOK {
		t.Errorf("a 4 MiB body = %d %s", rec.Code, clipBody(rec.Body.String()))
	}
	if got, err := e.objectsOf(kanade.ObjectScripts).GetBytes(t.Context(), "s/1"); err != nil || !bytes.Equal(got, keep) {
		t.Errorf("after refused uploads the object is %q %v, want it kept", got, err)
	}
	if _, err := e.objectsOf(kanade.ObjectScripts).GetInfo(t.Context(), "s/2"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("a refused upload left an object: %v", err)
	}

	// Without the store: 503 naming it, for every route.
	if err := e.nats.JS.DeleteObjectStore(t.Context(), kanade.ObjectAppPackages); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodHead} {
		if rec := e.request(m, "/api/app-packages/a/1"); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s without the store = %d", m, rec.Code)
		}
	}
	for _, r := range []*httptest.ResponseRecorder{e.do(http.MethodGet, "/api/app-packages", ""),
		e.send(http.MethodPost, "/api/app-packages/a/1", ctOK, string(bodyOK))} {
		if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), kanade.ObjectAppPackages) {
			t.Errorf("without the store = %d %s, want 503 naming it", r.Code, r.Body)
		}
	}
}

const bigFormType = "multipart/form-data; boundary=kanade-release-test-boundary"

// bigForm is a form whose file is n bytes of 'x' (a whole form of n +
// bigFormOverhead bytes).
func bigForm(t *testing.T, n int64) string {
	var b bytes.Buffer
	mw := testForm(&b)
	w, err := mw.CreateFormFile("file", "f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("x"), int(n))); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func bigFormOverhead(t *testing.T) int { return len(bigForm(t, 0)) }

// A 100 MB package goes from the request into the store while the heap
// grows by less than 8 MB (measured as the release test measures it: NATS
// in a process of its own), and comes back out a chunk at a time.
func TestAppPackageStreams100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	e := newManageEnvApart(t)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	const size = 100 << 20
	content := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{100}), size) }
	sent := sha256.New()
	pr, pw := io.Pipe()
	mw := testForm(pw)
	go func() {
		part, err := mw.CreateFormFile("file", "pkg.msi")
		if err == nil {
			if _, err = io.Copy(io.MultiWriter(part, sent), content()); err == nil {
				err = mw.Close()
			}
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/app-packages/big/1.0", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testToken)
	h := watchHeap()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	inuse, alloc, allocated := h.end()
	t.Logf("upload of %d bytes: heap in use grew by %.2f MiB at most, live heap by %.2f MiB, %.2f MiB allocated meanwhile",
		size, float64(inuse)/(1<<20), float64(alloc)/(1<<20), float64(allocated)/(1<<20))
	if res.StatusCode != http.StatusOK {
		t.Fatalf("upload = %d %s", res.StatusCode, answer)
	}
	digest := "SHA-256=" + base64.URLEncoding.EncodeToString(sent.Sum(nil))
	if want := fmt.Sprintf(`{"name":"big","version":"1.0","size":%d,"digest":%q}`, size, digest); strings.TrimSpace(string(answer)) != want {
		t.Errorf("answer %s, want %s", answer, want)
	}
	if inuse >= heapBudget || alloc >= heapBudget {
		t.Errorf("upload: the heap grew by %d bytes in use, %d live: the package was held in memory", inuse, alloc)
	}

	// Download it back through the route, compared as it streams.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dreq, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/app-packages/big/1.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	dreq.Header.Set("Authorization", "Bearer "+testToken)
	// nats.go allocates every chunk it receives, garbage at once; at the
	// default GOGC the heap may hold as much garbage as the rest of the
	// process has live (37 MiB beside the whole suite) before a
	// collection. A collection at every 5% of growth leaves the figure to
	// what is held.
	gc := debug.SetGCPercent(5)
	h = watchHeap()
	dres, err := http.DefaultClient.Do(dreq)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sameStream(dres.Body, content())
	dres.Body.Close()
	inuse, alloc, allocated = h.end()
	debug.SetGCPercent(gc)
	t.Logf("download of %d bytes: heap in use grew by %.2f MiB at most, live heap by %.2f MiB, %.2f MiB allocated meanwhile",
		size, float64(inuse)/(1<<20), float64(alloc)/(1<<20), float64(allocated)/(1<<20))
	if err != nil || n != size || dres.StatusCode != http.StatusOK {
		t.Fatalf("download = %d, %d bytes: %v", dres.StatusCode, n, err)
	}
	// What must never happen is the object held whole, or piling up
	// behind a slow reader.
	if inuse >= size/4 || alloc >= size/4 {
		t.Errorf("download: the heap grew by %d bytes in use, %d live: the object was held", inuse, alloc)
	}
}
