package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// TokenFile is the name of the generated static token inside the shell's
// data folder.
const TokenFile = "auth-token"

// LoadOrCreateToken returns the static token kept in dir/TokenFile,
// generating one (32 random bytes, base64url) the first time, so that a
// first run without any auth configuration is still secure (api.md rule 6)
// and keeps the same token, and thus the same dashboard link, across
// restarts. created reports whether this call made the file.
//
// The file is written to a temporary name and linked into place, so a crash
// never leaves an empty token file and two processes starting at once agree
// on one token. An existing file that group or others can access is refused
// rather than silently trusted (except on Windows, which has no such modes).
func LoadOrCreateToken(dir string) (token string, created bool, err error) {
	final := filepath.Join(dir, TokenFile)
	token, err = readToken(final)
	if err == nil {
		return token, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("auth: create token folder: %w", err)
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	token = base64.RawURLEncoding.EncodeToString(b[:])

	tmp, err := os.CreateTemp(dir, "."+TokenFile+"-*") // mode 0600
	if err != nil {
		return "", false, fmt.Errorf("auth: create token file: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	_, werr := tmp.WriteString(token + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", false, fmt.Errorf("auth: write token file %s: %w", tmpName, err)
	}
	// Link fails if final exists, so a concurrent creator cannot be
	// overwritten; the loser reads the winner's token.
	if err := os.Link(tmpName, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			token, err = readToken(final)
			return token, false, err
		}
		return "", false, fmt.Errorf("auth: install token file %s: %w", final, err)
	}
	return token, true, nil
}

// readToken reads and checks an existing token file. Its error wraps
// fs.ErrNotExist when there is no file.
func readToken(name string) (string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("auth: token file: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("auth: token file %s has mode %v; it must be readable by its owner only (chmod 600)", name, fi.Mode().Perm())
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("auth: read token file: %w", err)
	}
	// An operator may have edited the file and left a newline.
	token := strings.TrimSpace(string(b))
	if token == "" || !validTokenChars(token) {
		return "", fmt.Errorf("auth: token file %s is empty or holds whitespace or control characters", name)
	}
	return token, nil
}
