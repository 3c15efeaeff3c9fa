// Package exeversion reads the version a Windows executable declares in its
// VERSIONINFO resource (the ProductVersion that Explorer's Details tab
// shows), so that POST /api/agents/publish names a release after what the
// binary says it is rather than what an operator typed (fleet.md §6.3).
//
// It reads through an io.ReaderAt, a few small reads at the offsets the
// headers point to, so a build of any size is never loaded whole. The input
// is untrusted: every offset and length is checked before it is used, no
// read is larger than a VERSIONINFO block can be (64 KiB), the resource
// walk visits a bounded number of entries, and a malformed file is an
// error, never a panic. The standard debug/pe parses sections but not
// resources, and reads the whole COFF symbol table, so this package parses
// the few headers it needs itself.
package exeversion

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf16"
)

// Errors Read returns, wrapped with the detail of what was wrong.
var (
	// ErrNotPE: the input is not a PE image this package understands
	// (no MZ or PE signature, a truncated or inconsistent header, an
	// optional header neither PE32 nor PE32+).
	ErrNotPE = errors.New("not a Windows PE image")
	// ErrNoVersion: a PE image without a readable version: no resources,
	// no RT_VERSION resource, a malformed one, or neither ProductVersion
	// nor FileVersion set for any of its translations.
	ErrNoVersion = errors.New("no ProductVersion or FileVersion in the VERSIONINFO resource")
)

// Bounds of what Read looks at in a hostile file.
const (
	// maxSections is more than any linker emits; a header claiming more is
	// refused rather than read (40 bytes each).
	maxSections = 1024
	// maxEntries bounds the resource directory entries visited in all.
	maxEntries = 4096
	// maxVersionResources bounds the RT_VERSION data entries parsed.
	maxVersionResources = 16
	// maxVersionInfo is the largest VS_VERSIONINFO: its length is a WORD.
	maxVersionInfo = 0xFFFF
)

// rtVersion is the resource type of VERSIONINFO.
const rtVersion = 16

// Read returns the version of the PE image r: ProductVersion, else
// FileVersion, of the first translation (in the order of
// VarFileInfo\Translation) that sets one to something other than blanks,
// with trailing NULs and whitespace trimmed. Both PE32+ (64-bit) and PE32
// images are read; the optional header's magic says which. The error
// wraps ErrNotPE or ErrNoVersion.
func Read(r io.ReaderAt) (string, error) {
	im, err := open(r)
	if err != nil {
		return "", err
	}
	if im.rsrcRVA == 0 {
		return "", fmt.Errorf("%w: the image has no resource directory", ErrNoVersion)
	}
	w := walker{im: im}
	var firstErr error
	found := 0
	err = w.versions(func(data []byte) bool {
		found++
		v, err := versionOf(data)
		if err == nil {
			w.version = v
			return false
		}
		if firstErr == nil {
			firstErr = err
		}
		return found < maxVersionResources
	})
	switch {
	case w.version != "":
		return w.version, nil
	case err != nil:
		return "", err
	case firstErr != nil:
		return "", firstErr
	case found == 0:
		return "", fmt.Errorf("%w: the image has no RT_VERSION resource", ErrNoVersion)
	}
	return "", ErrNoVersion
}

// section is one entry of the section table, as far as mapping an RVA to
// a file offset needs it.
type section struct {
	va, rawSize, rawPtr uint32
}

// image is what Read needs of a PE image: the reader, its sections and
// where its resource directory is.
type image struct {
	r        io.ReaderAt
	sections []section
	rsrcRVA  uint32
}

// readFull reads exactly n bytes at off; running out of input is
// io.ErrUnexpectedEOF.
func readFull(r io.ReaderAt, off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	got, err := r.ReadAt(b, off)
	if got == n {
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

var le = binary.LittleEndian

// open reads the DOS, COFF and optional headers and the section table.
func open(r io.ReaderAt) (*image, error) {
	dos, err := readFull(r, 0, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: DOS header: %w", ErrNotPE, err)
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return nil, fmt.Errorf("%w: no MZ signature", ErrNotPE)
	}
	ntOff := int64(le.Uint32(dos[0x3c:]))
	coff, err := readFull(r, ntOff, 24)
	if err != nil {
		return nil, fmt.Errorf("%w: PE header at %#x: %w", ErrNotPE, ntOff, err)
	}
	if string(coff[:4]) != "PE\x00\x00" {
		return nil, fmt.Errorf("%w: no PE signature at %#x", ErrNotPE, ntOff)
	}
	nSections := int(le.Uint16(coff[6:]))
	optSize := int(le.Uint16(coff[20:]))
	if nSections > maxSections {
		return nil, fmt.Errorf("%w: %d sections", ErrNotPE, nSections)
	}
	opt, err := readFull(r, ntOff+24, optSize)
	if err != nil {
		return nil, fmt.Errorf("%w: optional header: %w", ErrNotPE, err)
	}
	if len(opt) < 2 {
		return nil, fmt.Errorf("%w: optional header of %d bytes", ErrNotPE, len(opt))
	}
	// The data directories follow the fields whose widths differ between
	// PE32+ and PE32 (ImageBase and the stack and heap sizes).
	var numDirsAt, dirsAt int
	switch magic := le.Uint16(opt); magic {
	case 0x20b: // PE32+
		numDirsAt, dirsAt = 108, 112
	case 0x10b: // PE32
		numDirsAt, dirsAt = 92, 96
	default:
		return nil, fmt.Errorf("%w: optional header magic %#x", ErrNotPE, magic)
	}
	if len(opt) < dirsAt {
		return nil, fmt.Errorf("%w: optional header of %d bytes", ErrNotPE, len(opt))
	}
	im := &image{r: r}
	const resourceDir = 2
	if n := le.Uint32(opt[numDirsAt:]); n > resourceDir && len(opt) >= dirsAt+(resourceDir+1)*8 {
		im.rsrcRVA = le.Uint32(opt[dirsAt+resourceDir*8:])
	}
	table, err := readFull(r, ntOff+24+int64(optSize), nSections*40)
	if err != nil {
		return nil, fmt.Errorf("%w: section table: %w", ErrNotPE, err)
	}
	im.sections = make([]section, nSections)
	for i := range im.sections {
		s := table[i*40:]
		im.sections[i] = section{va: le.Uint32(s[12:]), rawSize: le.Uint32(s[16:]), rawPtr: le.Uint32(s[20:])}
	}
	return im, nil
}

// read reads n bytes at rva from the section holding them; the bytes must
// lie within the section's data in the file.
func (im *image) read(rva uint32, n int) ([]byte, error) {
	for _, s := range im.sections {
		if rva < s.va || uint64(rva-s.va) >= uint64(s.rawSize) {
			continue
		}
		in := rva - s.va
		if uint64(in)+uint64(n) > uint64(s.rawSize) {
			return nil, fmt.Errorf("%w: %d bytes at RVA %#x run past the end of their section", ErrNoVersion, n, rva)
		}
		b, err := readFull(im.r, int64(s.rawPtr)+int64(in), n)
		if err != nil {
			return nil, fmt.Errorf("%w: %d bytes at RVA %#x: %w", ErrNoVersion, n, rva, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: RVA %#x is in no section's data", ErrNoVersion, rva)
}

// available is how many bytes of section data follow rva (0: none).
func (im *image) available(rva uint32) uint32 {
	for _, s := range im.sections {
		if rva >= s.va && uint64(rva-s.va) < uint64(s.rawSize) {
			return s.rawSize - (rva - s.va)
		}
	}
	return 0
}

// walker visits the resource directory: type, then name, then language.
type walker struct {
	im      *image
	visited int
	version string
}

// entry is one resource directory entry: its id (or, for a named entry,
// named true) and the offset, from the start of the resource directory, of
// a subdirectory (dir true) or a data entry.
type entry struct {
	id    uint32
	named bool
	off   uint32
	dir   bool
}

// dir reads the entries of the directory at off, charging them to the
// walk's budget.
func (w *walker) dir(off uint32) ([]entry, error) {
	if uint64(w.im.rsrcRVA)+uint64(off)+16 > 0xFFFFFFFF {
		return nil, fmt.Errorf("%w: resource directory at %#x is outside the image", ErrNoVersion, off)
	}
	rva := w.im.rsrcRVA + off
	h, err := w.im.read(rva, 16)
	if err != nil {
		return nil, err
	}
	n := int(le.Uint16(h[12:])) + int(le.Uint16(h[14:]))
	if w.visited+n > maxEntries {
		return nil, fmt.Errorf("%w: more than %d resource directory entries", ErrNoVersion, maxEntries)
	}
	w.visited += n
	if n == 0 {
		return nil, nil
	}
	b, err := w.im.read(rva+16, n*8)
	if err != nil {
		return nil, err
	}
	out := make([]entry, n)
	for i := range out {
		name, data := le.Uint32(b[i*8:]), le.Uint32(b[i*8+4:])
		out[i] = entry{id: name &^ (1 << 31), named: name&(1<<31) != 0, off: data &^ (1 << 31), dir: data&(1<<31) != 0}
	}
	return out, nil
}

// versions calls fn with the data of every RT_VERSION resource, every name
// and language in directory order, until fn returns false. A directory
// that cannot be read ends the walk with its error.
func (w *walker) versions(fn func(data []byte) bool) error {
	root, err := w.dir(0)
	if err != nil {
		return err
	}
	for _, t := range root {
		if t.named || t.id != rtVersion || !t.dir {
			continue
		}
		names, err := w.dir(t.off)
		if err != nil {
			return err
		}
		for _, n := range names {
			if !n.dir {
				continue
			}
			langs, err := w.dir(n.off)
			if err != nil {
				return err
			}
			for _, l := range langs {
				if l.dir {
					continue // a fourth level does not exist
				}
				data, err := w.data(l.off)
				if err != nil {
					return err
				}
				if !fn(data) {
					return nil
				}
			}
		}
	}
	return nil
}

// data reads the resource a data entry (IMAGE_RESOURCE_DATA_ENTRY) at off
// describes, at most maxVersionInfo bytes of it.
func (w *walker) data(off uint32) ([]byte, error) {
	if uint64(w.im.rsrcRVA)+uint64(off)+16 > 0xFFFFFFFF {
		return nil, fmt.Errorf("%w: resource data entry at %#x is outside the image", ErrNoVersion, off)
	}
	e, err := w.im.read(w.im.rsrcRVA+off, 16)
	if err != nil {
		return nil, err
	}
	rva, size := le.Uint32(e), le.Uint32(e[4:])
	size = min(size, maxVersionInfo, w.im.available(rva))
	if size == 0 {
		return nil, fmt.Errorf("%w: an empty VERSIONINFO resource", ErrNoVersion)
	}
	return w.im.read(rva, int(size))
}

// versionOf reads one VS_VERSIONINFO: the string tables of its
// StringFileInfo and the translations of its VarFileInfo, then picks the
// version in translation order.
func versionOf(data []byte) (string, error) {
	words := make([]uint16, len(data)/2)
	for i := range words {
		words[i] = le.Uint16(data[2*i:])
	}
	root, _, ok := parseBlock(words, bytesLen)
	if !ok {
		return "", fmt.Errorf("%w: malformed VS_VERSIONINFO", ErrNoVersion)
	}
	var translations []uint32
	// tables maps a translation (language << 16 | code page) to its
	// ProductVersion and FileVersion; a later table or string wins.
	tables := map[uint32]*[2]string{}
	for fi, rest, ok := parseBlock(root.children, zeroLen); ok; fi, rest, ok = parseBlock(rest, zeroLen) {
		switch key := fi.keyString(); key {
		case "StringFileInfo":
			for st, rest, ok := parseBlock(fi.children, zeroLen); ok; st, rest, ok = parseBlock(rest, zeroLen) {
				lang, ok := parseLang(st.key)
				if !ok {
					continue
				}
				t := tables[lang]
				if t == nil {
					t = &[2]string{}
					tables[lang] = t
				}
				for s, rest, ok := parseBlock(st.children, wordsLen); ok; s, rest, ok = parseBlock(rest, wordsLen) {
					switch s.keyString() {
					case "ProductVersion":
						t[0] = text(s.value)
					case "FileVersion":
						t[1] = text(s.value)
					}
				}
			}
		case "VarFileInfo":
			for v, rest, ok := parseBlock(fi.children, bytesLen); ok; v, rest, ok = parseBlock(rest, bytesLen) {
				if v.keyString() != "Translation" {
					continue
				}
				translations = translations[:0]
				for i := 0; i+1 < len(v.value); i += 2 {
					translations = append(translations, uint32(v.value[i])<<16|uint32(v.value[i+1]))
				}
			}
		}
	}
	if len(translations) == 0 {
		return "", fmt.Errorf("%w: no VarFileInfo\\Translation", ErrNoVersion)
	}
	for _, tr := range translations {
		t := tables[tr]
		if t == nil {
			continue
		}
		for _, v := range t {
			if v != "" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%w (%d translations)", ErrNoVersion, len(translations))
}

// block is one node of a VERSIONINFO tree: every node is wLength,
// wValueLength, wType, a NUL-terminated UTF-16 key, padding to 32 bits, the
// value, padding, and the children.
type block struct {
	key, value, children []uint16
}

func (b block) keyString() string { return string(utf16.Decode(b.key)) }

// valueUnit says how a node's wValueLength counts: in bytes (the fixed
// file info, a Var), in WCHARs (a String), or always zero
// (StringFileInfo, VarFileInfo, a StringTable: then it is ignored).
type valueUnit int

const (
	bytesLen valueUnit = iota
	wordsLen
	zeroLen
)

// parseBlock reads the node at the start of words and returns it and the
// words after it. ok is false when no node fits (the siblings end there).
// Each node takes at least 4 words, so a loop over siblings ends.
func parseBlock(words []uint16, unit valueUnit) (b block, rest []uint16, ok bool) {
	if len(words) < 4 {
		return block{}, nil, false
	}
	n := max(4, int(words[0])/2)
	if n > len(words) {
		return block{}, nil, false
	}
	rest = words[min(align2(n), len(words)):]
	w := words[:n]
	end := 3
	for end < len(w) && w[end] != 0 {
		end++
	}
	if end == len(w) {
		return block{}, nil, false // the key has no terminator
	}
	b.key = w[3:end]
	valueAt := min(align2(end+1), len(w))
	var vlen int
	switch unit {
	case bytesLen:
		vlen = (int(words[1]) + 1) / 2
	case wordsLen:
		vlen = int(words[1])
	}
	valueEnd := min(valueAt+vlen, len(w))
	b.value = w[valueAt:valueEnd]
	b.children = w[min(align2(valueEnd), len(w)):]
	return b, rest, true
}

// align2 rounds a count of words up to 32 bits.
func align2(n int) int { return (n + 1) &^ 1 }

// parseLang reads a StringTable's key, eight hex digits: the language
// then the code page.
func parseLang(key []uint16) (uint32, bool) {
	if len(key) != 8 {
		return 0, false
	}
	var v uint32
	for _, c := range key {
		var d uint16
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}

// text decodes a String's value, trimming the trailing NULs (resource
// compilers keep the terminator, some pad with more) and whitespace.
func text(v []uint16) string {
	return strings.TrimRightFunc(string(utf16.Decode(v)), func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
}
