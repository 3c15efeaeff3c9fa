package exeversion_test

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/exeversion"
	"github.com/kanade-fleet/backend/exeversion/petest"
)

// The synthetic images are real PE files: the standard library reads
// their headers and sections as the builder meant them.
func TestSyntheticImagesAreValidPE(t *testing.T) {
	for _, pe32 := range []bool{false, true} {
		im := petest.Version("1.2.3")
		im.PE32 = pe32
		im.TextLen = 5000
		b := im.Bytes()
		if int64(len(b)) != im.Size() {
			t.Fatalf("Size %d, wrote %d", im.Size(), len(b))
		}
		f, err := pe.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("PE32=%v: %v", pe32, err)
		}
		switch oh := f.OptionalHeader.(type) {
		case *pe.OptionalHeader64:
			if pe32 {
				t.Fatal("PE32 image has a 64-bit optional header")
			}
			if oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_RESOURCE].VirtualAddress == 0 {
				t.Fatal("no resource directory")
			}
		case *pe.OptionalHeader32:
			if !pe32 {
				t.Fatal("PE32+ image has a 32-bit optional header")
			}
		default:
			t.Fatalf("optional header %T", oh)
		}
		if len(f.Sections) != 2 || f.Sections[0].Name != ".text" || f.Sections[1].Name != ".rsrc" {
			t.Fatalf("sections %v", f.Sections)
		}
		if f.Sections[1].Offset < 5000 {
			t.Fatalf(".rsrc at %d, before the end of .text", f.Sections[1].Offset)
		}
	}
}

func TestRead(t *testing.T) {
	us, jp := uint32(0x040904B0), uint32(0x041104B0)
	table := func(lang uint16, kv ...string) petest.StringTable {
		t := petest.StringTable{Lang: lang, CodePage: 0x04B0}
		for i := 0; i+1 < len(kv); i += 2 {
			t.Strings = append(t.Strings, petest.KV{Key: kv[i], Value: kv[i+1]})
		}
		return t
	}
	cases := []struct {
		name string
		im   petest.Image
		want string
	}{
		{"a 64-bit image answers its ProductVersion", petest.Version("0.43.56"), "0.43.56"},
		{"a 32-bit image answers its ProductVersion", func() petest.Image { im := petest.Version("0.43.56"); im.PE32 = true; return im }(), "0.43.56"},
		{"ProductVersion wins over FileVersion",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "FileVersion", "1.0.0.0", "ProductVersion", "1.0.0")}}, "1.0.0"},
		{"FileVersion when ProductVersion is absent",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "FileVersion", "2.0.0.0")}}, "2.0.0.0"},
		{"FileVersion when ProductVersion is blank",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", " \x00 ", "FileVersion", "2.0.0.1")}}, "2.0.0.1"},
		{"trailing NULs and whitespace are trimmed, leading ones kept",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", " 3.1\x00\x00 \t\r\n")}}, " 3.1"},
		{"the first translation with a version wins",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", "en"), table(0x0411, "ProductVersion", "ja")},
				Translations: []uint32{jp, us}}, "ja"},
		{"a translation without a version is skipped",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", "en"), table(0x0411, "Comments", "x")},
				Translations: []uint32{jp, us}}, "en"},
		{"a translation's ProductVersion and FileVersion come before the next translation's",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", "en"), table(0x0411, "FileVersion", "ja-file")},
				Translations: []uint32{jp, us}}, "ja-file"},
		{"a translation without a table is skipped",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", "en")}, Translations: []uint32{0x04070000, us}}, "en"},
		{"lower-case hex names the table too",
			petest.Image{VersionInfo: petest.Block("VS_VERSION_INFO", 0, 0, nil,
				petest.Block("StringFileInfo", 1, 0, nil, petest.Block("040904b0", 1, 0, nil, str("ProductVersion", "4.5"))),
				translation(us))}, "4.5"},
		{"non-ASCII text decodes from UTF-16, surrogate pairs included",
			petest.Image{Tables: []petest.StringTable{table(0x0409, "ProductVersion", "1.0-β𝛼")}}, "1.0-β𝛼"},
		{"a value whose length counts bytes instead of characters",
			petest.Image{VersionInfo: petest.Block("VS_VERSION_INFO", 0, 0, nil,
				petest.Block("StringFileInfo", 1, 0, nil, petest.Block("040904B0", 1, 0, nil,
					petest.Block("ProductVersion", 1, 12, utf16z("5.6.7")))),
				translation(us))}, "5.6.7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := exeversion.Read(bytes.NewReader(c.im.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func str(key, value string) []byte {
	v := utf16z(value)
	return petest.Block(key, 1, uint16(len(v)/2), v)
}

func translation(tr ...uint32) []byte {
	v := make([]byte, 4*len(tr))
	for i, x := range tr {
		binary.LittleEndian.PutUint16(v[4*i:], uint16(x>>16))
		binary.LittleEndian.PutUint16(v[4*i+2:], uint16(x))
	}
	return petest.Block("VarFileInfo", 1, 0, nil, petest.Block("Translation", 0, uint16(len(v)), v))
}

func utf16z(s string) []byte {
	var b []byte
	for _, r := range s {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	return append(b, 0, 0)
}

func TestReadRefuses(t *testing.T) {
	valid := petest.Version("1.0").Bytes()
	patched := func(off int, b ...byte) []byte {
		c := bytes.Clone(valid)
		copy(c[off:], b)
		return c
	}
	us := uint32(0x040904B0)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty input", nil, exeversion.ErrNotPE},
		{"a script", []byte("#!/bin/sh\necho hello\n"), exeversion.ErrNotPE},
		{"an ELF binary", append([]byte("\x7fELF"), make([]byte, 200)...), exeversion.ErrNotPE},
		{"MZ without a PE header", append([]byte("MZ"), make([]byte, 100)...), exeversion.ErrNotPE},
		{"a PE header offset past the end", patched(0x3c, 0xff, 0xff, 0xff, 0x7f), exeversion.ErrNotPE},
		{"a ROM image's optional header", patched(0x40+24, 0x07, 0x01), exeversion.ErrNotPE},
		{"a truncated header", valid[:0x100], exeversion.ErrNotPE},
		{"no resources", petest.Image{NoResources: true}.Bytes(), exeversion.ErrNoVersion},
		{"resources cut off", valid[:0x500], exeversion.ErrNoVersion},
		{"no translation", petest.Image{Tables: petest.Version("1.0").Tables, NoTranslation: true}.Bytes(), exeversion.ErrNoVersion},
		{"no table for the translation", petest.Image{Tables: petest.Version("1.0").Tables, Translations: []uint32{0x04110000}}.Bytes(), exeversion.ErrNoVersion},
		{"neither ProductVersion nor FileVersion",
			petest.Image{Tables: []petest.StringTable{{Lang: 0x0409, CodePage: 0x04B0, Strings: []petest.KV{{Key: "ProductName", Value: "x"}}}}}.Bytes(),
			exeversion.ErrNoVersion},
		{"a blank version", petest.Version(" \x00").Bytes(), exeversion.ErrNoVersion},
		{"a table name that is not hex",
			petest.Image{VersionInfo: petest.Block("VS_VERSION_INFO", 0, 0, nil,
				petest.Block("StringFileInfo", 1, 0, nil, petest.Block("0409x4B0", 1, 0, nil, str("ProductVersion", "1"))),
				translation(us))}.Bytes(), exeversion.ErrNoVersion},
		{"a key without its terminator",
			petest.Image{VersionInfo: []byte{0x10, 0, 0, 0, 0, 0, 'V', 0, 'S', 0, '_', 0, 'V', 0, 'E', 0}}.Bytes(), exeversion.ErrNoVersion},
		{"a block longer than its data",
			petest.Image{VersionInfo: []byte{0xff, 0x7f, 0, 0, 0, 0, 0, 0}}.Bytes(), exeversion.ErrNoVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := exeversion.Read(bytes.NewReader(c.in))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %q, %v; want %v", got, err, c.want)
			}
		})
	}
}

// The version is found however far into the file the resources are, with
// a handful of small reads: the reader never walks the file.
func TestReadIsRandomAccess(t *testing.T) {
	for _, pe32 := range []bool{false, true} {
		im := petest.Version("9.8.7")
		im.PE32 = pe32
		im.TextLen = 20 << 20
		im.Text = rand.NewChaCha8([32]byte{1})
		var b bytes.Buffer
		if _, err := im.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		cr := &countingReaderAt{r: bytes.NewReader(b.Bytes())}
		got, err := exeversion.Read(cr)
		if err != nil || got != "9.8.7" {
			t.Fatalf("PE32=%v: %q, %v", pe32, got, err)
		}
		if cr.reads > 16 || cr.bytes > 4096 {
			t.Fatalf("PE32=%v: %d reads of %d bytes in all for a %d-byte file", pe32, cr.reads, cr.bytes, b.Len())
		}
	}
}

type countingReaderAt struct {
	r            io.ReaderAt
	reads, bytes int
	biggest      int
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	c.bytes += len(p)
	c.biggest = max(c.biggest, len(p))
	return c.r.ReadAt(p, off)
}

// A directory whose entries point back at itself, or that claims 65535
// entries, ends the walk within its budget.
func TestReadHostileDirectories(t *testing.T) {
	valid := petest.Version("1.0").Bytes()
	f, err := pe.NewFile(bytes.NewReader(valid))
	if err != nil {
		t.Fatal(err)
	}
	rsrc := int(f.Sections[1].Offset)
	cases := map[string]func(b []byte){
		"type entry points at the root": func(b []byte) { binary.LittleEndian.PutUint32(b[rsrc+20:], 1<<31) },
		"name entry points at the root": func(b []byte) { binary.LittleEndian.PutUint32(b[rsrc+0x18+20:], 1<<31) },
		"65535 named and 65535 id entries": func(b []byte) {
			binary.LittleEndian.PutUint16(b[rsrc+12:], 0xffff)
			binary.LittleEndian.PutUint16(b[rsrc+14:], 0xffff)
		},
		"data entry at an offset past 4 GiB": func(b []byte) { binary.LittleEndian.PutUint32(b[rsrc+0x30+20:], 0x7fffffff) },
		"data RVA past the sections":         func(b []byte) { binary.LittleEndian.PutUint32(b[rsrc+0x48:], 0xfffffff0) },
		"data size of 4 GiB":                 func(b []byte) { binary.LittleEndian.PutUint32(b[rsrc+0x4c:], 0xffffffff) },
		"65535 sections": func(b []byte) {
			binary.LittleEndian.PutUint16(b[0x40+6:], 0xffff)
		},
		"optional header size of 64 KiB": func(b []byte) { binary.LittleEndian.PutUint16(b[0x40+20:], 0xffff) },
	}
	for name, patch := range cases {
		t.Run(name, func(t *testing.T) {
			b := bytes.Clone(valid)
			patch(b)
			cr := &countingReaderAt{r: bytes.NewReader(b)}
			v, err := exeversion.Read(cr)
			t.Logf("%q, %v (%d reads, %d bytes, biggest %d)", v, err, cr.reads, cr.bytes, cr.biggest)
			if err == nil && v != "1.0" {
				t.Fatalf("got %q", v)
			}
			if cr.biggest > 1<<16 {
				t.Fatalf("a read of %d bytes", cr.biggest)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	for _, im := range []petest.Image{
		petest.Version("0.43.56"),
		func() petest.Image { im := petest.Version("1.2.3.4"); im.PE32 = true; return im }(),
		{Tables: []petest.StringTable{{Lang: 0x0409, CodePage: 0x04B0, Strings: []petest.KV{{Key: "FileVersion", Value: "7"}}},
			{Lang: 0x0411, CodePage: 0x03A4, Strings: []petest.KV{{Key: "ProductVersion", Value: "八"}}}},
			Translations: []uint32{0x041103A4, 0x040904B0}},
		{NoResources: true},
	} {
		b := im.Bytes()
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReaderAt{r: bytes.NewReader(data)}
		v, err := exeversion.Read(cr)
		if err == nil && (v == "" || strings.TrimRight(v, " \x00") != v) {
			t.Fatalf("version %q", v)
		}
		if err != nil && !errors.Is(err, exeversion.ErrNotPE) && !errors.Is(err, exeversion.ErrNoVersion) {
			t.Fatalf("error %v wraps neither ErrNotPE nor ErrNoVersion", err)
		}
		// No read larger than a section table or a VERSIONINFO, and few
		// of them, whatever the input claims.
		if cr.biggest > max(1<<16, maxSectionTable) || cr.reads > 4*4096 {
			t.Fatalf("%d reads, the biggest %d bytes", cr.reads, cr.biggest)
		}
	})
}

const maxSectionTable = 1024 * 40

// FuzzReadVersionInfo fuzzes the VERSIONINFO tree alone, inside a valid
// image, where FuzzRead's mutations of whole images seldom reach.
func FuzzReadVersionInfo(f *testing.F) {
	us := uint32(0x040904B0)
	for _, im := range []petest.Image{
		petest.Version("0.43.56"),
		{Tables: []petest.StringTable{{Lang: 0x0409, CodePage: 0x04B0, Strings: []petest.KV{{Key: "FileVersion", Value: "7"}}},
			{Lang: 0x0411, CodePage: 0x03A4, Strings: []petest.KV{{Key: "ProductVersion", Value: "八"}}}},
			Translations: []uint32{0x041103A4, 0x040904B0}},
		{VersionInfo: petest.Block("VS_VERSION_INFO", 0, 0, nil,
			petest.Block("StringFileInfo", 1, 0, nil, petest.Block("040904b0", 1, 0, nil, str("ProductVersion", "4.5"))),
			translation(us))},
	} {
		f.Add(im.VersionResource())
	}
	f.Fuzz(func(t *testing.T, vi []byte) {
		if len(vi) > 0xFFFF {
			return
		}
		v, err := exeversion.Read(bytes.NewReader(petest.Image{VersionInfo: vi}.Bytes()))
		if err == nil && (v == "" || strings.TrimRight(v, " \x00") != v) {
			t.Fatalf("version %q", v)
		}
		if err != nil && !errors.Is(err, exeversion.ErrNoVersion) {
			t.Fatalf("error %v; the image is valid, only its version may be missing", err)
		}
	})
}
