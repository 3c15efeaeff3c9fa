package password

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// cheap keeps the tests fast; Default's cost is measured by the benchmarks.
var cheap = Params{Time: 1, MemoryKiB: 64, Threads: 1}

func TestHashThenVerify(t *testing.T) {
	h, err := Hash("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("hash %q is not the PHC string of argon2id with a 16-byte salt and a 32-byte key", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("the hash carries the password")
	}
	for _, tt := range []struct {
		pw   string
		want bool
	}{
		{"correct horse battery", true},
		{"correct horse batterY", false},
		{"correct horse battery ", false},
		{"", false},
	} {
		got, err := Verify(tt.pw, h)
		if err != nil || got != tt.want {
			t.Errorf("Verify(%q) = %v, %v; want %v", tt.pw, got, err, tt.want)
		}
	}
	again, err := Hash("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if again == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestVerifyUsesTheStoredParameters(t *testing.T) {
	h, err := Hash("pass-word-1", Params{Time: 2, MemoryKiB: 128, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := Verify("pass-word-1", h); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
}

func TestVerifyRefusesMalformedHashes(t *testing.T) {
	good, err := Hash("pass-word-1", cheap)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for name, h := range map[string]string{
		"empty":                 "",
		"argon2i":               with(1, "argon2i"),
		"version 16":            with(2, "v=16"),
		"params out of order":   with(3, "t=1,m=64,p=1"),
		"leading zero":          with(3, "m=064,t=1,p=1"),
		"huge memory":           with(3, "m=4194304,t=1,p=1"),
		"huge time":             with(3, "m=64,t=1000,p=1"),
		"zero threads":          with(3, "m=64,t=1,p=0"),
		"threads beyond uint8":  with(3, "m=64,t=1,p=257"),
		"padded salt":           with(4, parts[4]+"=="),
		"short salt":            with(4, "AAAA"),
		"short key":             with(5, "AAAA"),
		"url alphabet":          with(5, strings.NewReplacer("+", "-", "/", "_").Replace(parts[5])+"-"),
		"missing key":           strings.Join(parts[:5], "$"),
		"trailing field":        good + "$x",
		"bcrypt":                "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"memory below 8 a lane": with(3, "m=8,t=1,p=2"),
	} {
		t.Run(name, func(t *testing.T) {
			ok, err := Verify("pass-word-1", h)
			if ok || !errors.Is(err, ErrMalformed) {
				t.Errorf("Verify = %v, %v; want false, ErrMalformed", ok, err)
			}
			if err != nil && strings.Contains(err.Error(), parts[5]) {
				t.Error("the error quotes the hash")
			}
		})
	}
}

func TestHashRefusesParametersOutOfBounds(t *testing.T) {
	for _, p := range []Params{{}, {Time: 1, MemoryKiB: 4, Threads: 1}, {Time: 17, MemoryKiB: 64, Threads: 1}, {Time: 1, MemoryKiB: 2 << 20, Threads: 1}} {
		if _, err := Hash("pass-word-1", p); err == nil {
			t.Errorf("Hash with %+v: no error", p)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		pw string
		ok bool
	}{
		{"1234567", false},
		{"12345678", true},
		{"ぱすわーど", false}, // 5 characters, 15 bytes: counted in characters
		{"ぱすわーどぱすわ", true},
		{strings.Repeat("a", MaxBytes), true},
		{strings.Repeat("a", MaxBytes+1), false},
		{"abcdefg\xff", false},
	} {
		err := Check(tt.pw)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.pw, err, tt.ok)
		}
		if err != nil && len(tt.pw) > 3 && strings.Contains(err.Error(), tt.pw) {
			t.Errorf("Check's error quotes the password: %v", err)
		}
	}
}

// TestDefaultCostsAboutALogin keeps Default inside the brief's budget of
// 50–250 ms of KDF per login, with slack for a loaded CI host: it fails
// only far outside it, and the benchmark gives the real figure.
func BenchmarkHash(b *testing.B) {
	p := Default()
	for b.Loop() {
		if _, err := Hash("pass-word-1", p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	h, err := Hash("pass-word-1", Default())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := Verify("pass-word-1", h); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkBurn(b *testing.B) {
	for b.Loop() {
		Burn("pass-word-1", Default())
	}
}
