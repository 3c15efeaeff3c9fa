package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestTheZipHoldsAnExecutableBootstrapAndIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bootstrap")
	content := bytes.Repeat([]byte("\x7fELF not really"), 1000)
	if err := os.WriteFile(bin, content, 0o644); err != nil {
		t.Fatal(err)
	}
	var zips [][]byte
	for i := range 2 {
		out := filepath.Join(dir, "b"+string(rune('0'+i))+".zip")
		if err := run([]string{"-o", out, bin}, io.Discard); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		zips = append(zips, b)
	}
	if !bytes.Equal(zips[0], zips[1]) {
		t.Error("two zips of the same binary differ")
	}
	zr, err := zip.NewReader(bytes.NewReader(zips[0]), int64(len(zips[0])))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
		t.Fatalf("entries %v, want bootstrap alone", zr.File)
	}
	if m := zr.File[0].Mode(); m.Perm() != 0o755 || !m.IsRegular() {
		t.Errorf("mode %v, want -rwxr-xr-x: the runtime must be able to execute it", m)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, content) {
		t.Error("the entry is not the binary")
	}
	if err := run([]string{"-o", filepath.Join(dir, "x.zip"), filepath.Join(dir, "missing")}, io.Discard); err == nil {
		t.Error("no error for a missing binary")
	}
}
