package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/andybalholm/brotli"
)

// TestCompressedAnswersCrossTheGateway: the dashboard's brotli and gzip
// files and a gzipped JSON answer reach a Lambda caller base64-encoded
// with their Content-Encoding, and decode to exactly what the same handler
// serves over plain HTTP without compression (the HTTP shell's answer);
// an answer too small to compress stays plain text.
func TestCompressedAnswersCrossTheGateway(t *testing.T) {
	env := testEnv(t)
	h, cleanup, err := newHandler(t.Context(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	direct := func(path string) []byte {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Encoding") != "" {
			t.Fatalf("GET %s over HTTP: %d, Content-Encoding %q", path, rec.Code, rec.Header().Get("Content-Encoding"))
		}
		return rec.Body.Bytes()
	}
	gunzip := func(b []byte) ([]byte, error) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	}
	unbrotli := func(b []byte) ([]byte, error) { return io.ReadAll(brotli.NewReader(bytes.NewReader(b))) }
	identity := func(b []byte) ([]byte, error) { return b, nil }
	tests := []struct {
		name, path, accept string
		wantCoding         string
		wantBase64         bool
		decode             func([]byte) ([]byte, error)
	}{
		{"the script in brotli", "/assets/app.js", "gzip, deflate, br", "br", true, unbrotli},
		{"the script in gzip", "/assets/app.js", "gzip", "gzip", true, gunzip},
		{"the page in brotli", "/", "br", "br", true, unbrotli},
		{"the API document gzipped", "/api/openapi.json", "gzip, br", "gzip", true, gunzip},
		{"a small answer stays text", "/api/version", "gzip, br", "", false, identity},
		{"no Accept-Encoding: text", "/assets/app.js", "", "", false, identity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := direct(tt.path)
			ev := v2Event("$default", tt.path, "", nil)
			hdr := ev["headers"].(obj)
			hdr["authorization"] = "Bearer " + token
			if tt.accept != "" {
				hdr["accept-encoding"] = tt.accept
			}
			raw, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			a := invokeRaw(t, h, raw)
			if a.StatusCode != http.StatusOK || a.Headers["Content-Encoding"] != tt.wantCoding || a.IsBase64Encoded != tt.wantBase64 {
				t.Fatalf("status %d, Content-Encoding %q, base64 %v; want 200, %q, %v",
					a.StatusCode, a.Headers["Content-Encoding"], a.IsBase64Encoded, tt.wantCoding, tt.wantBase64)
			}
			got, err := tt.decode(a.body(t))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decoded body of %d bytes differs from the %d bytes served over HTTP", len(got), len(want))
			}
		})
	}
}
