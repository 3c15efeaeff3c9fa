// Package petest assembles small synthetic Windows PE images with a
// VERSIONINFO resource, for tests of code that reads or receives agent
// builds: no binary blobs in the repository, and any size on demand (a
// .text section streamed from a reader puts the resources as far into the
// file as a test wants).
package petest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf16"
)

// StringTable is one StringFileInfo table: its translation and its
// strings, written in order.
type StringTable struct {
	Lang, CodePage uint16
	Strings        []KV
}

// KV is one String of a table.
type KV struct{ Key, Value string }

// Image describes a PE image to write.
type Image struct {
	// PE32 writes a 32-bit image; the default is PE32+ (64-bit).
	PE32 bool
	// Tables are the StringFileInfo tables.
	Tables []StringTable
	// Translations are the VarFileInfo\Translation pairs, language << 16 |
	// code page; nil lists each table's, in order. NoTranslation leaves
	// VarFileInfo out.
	Translations  []uint32
	NoTranslation bool
	// VersionInfo, when set, is the RT_VERSION data verbatim instead of
	// the one built from the fields above.
	VersionInfo []byte
	// NoResources leaves the .rsrc section and the resource directory out.
	NoResources bool
	// TextLen bytes of a .text section before .rsrc, read from Text (nil:
	// zeros).
	TextLen int64
	Text    io.Reader
}

// Version is a PE32+ image whose one table (U.S. English, Unicode) sets
// ProductVersion and FileVersion to v.
func Version(v string) Image {
	return Image{Tables: []StringTable{{Lang: 0x0409, CodePage: 0x04B0, Strings: []KV{
		{"CompanyName", "kanade"}, {"FileVersion", v}, {"ProductName", "kanade-agent"}, {"ProductVersion", v},
	}}}}
}

// Layout constants: headers fill the first fileAlign bytes, sections are
// sectionAlign apart in memory.
const (
	fileAlign    = 0x200
	sectionAlign = 0x1000
	headersSize  = 0x400
	peOffset     = 0x40
)

// Bytes is the whole image in memory (for small images).
func (im Image) Bytes() []byte {
	var b bytes.Buffer
	if _, err := im.WriteTo(&b); err != nil {
		panic(err) // a bytes.Buffer does not fail; Text might, and is the caller's
	}
	return b.Bytes()
}

// Size is how many bytes WriteTo writes.
func (im Image) Size() int64 {
	textRaw := alignUp(im.TextLen, fileAlign)
	if im.NoResources {
		return headersSize + textRaw
	}
	return headersSize + textRaw + alignUp(int64(len(im.rsrc(0))), fileAlign)
}

// WriteTo writes the image: headers, .text, then .rsrc.
func (im Image) WriteTo(w io.Writer) (int64, error) {
	textRaw := alignUp(im.TextLen, fileAlign)
	textVirt := max(alignUp(im.TextLen, sectionAlign), sectionAlign)
	rsrcVA := uint32(sectionAlign + textVirt)
	var rsrc []byte
	if !im.NoResources {
		rsrc = im.rsrc(rsrcVA)
	}
	rsrcRaw := alignUp(int64(len(rsrc)), fileAlign)
	sizeOfImage := int64(rsrcVA) + max(alignUp(int64(len(rsrc)), sectionAlign), sectionAlign)

	h := make([]byte, headersSize)
	copy(h, "MZ")
	le.PutUint32(h[0x3c:], peOffset)
	copy(h[peOffset:], "PE\x00\x00")
	coff := h[peOffset+4:]
	optSize := 240
	machine := uint16(0x8664)
	if im.PE32 {
		optSize, machine = 224, 0x14c
	}
	nSections := uint16(2)
	if im.NoResources {
		nSections = 1
	}
	le.PutUint16(coff[0:], machine)
	le.PutUint16(coff[2:], nSections)
	le.PutUint16(coff[16:], uint16(optSize))
	le.PutUint16(coff[18:], 0x0022) // executable, large address aware

	opt := coff[20:]
	var dirs []byte
	if im.PE32 {
		le.PutUint16(opt[0:], 0x10b)
		le.PutUint32(opt[4:], uint32(textRaw)) // SizeOfCode
		le.PutUint32(opt[16:], sectionAlign)   // AddressOfEntryPoint
		le.PutUint32(opt[20:], sectionAlign)   // BaseOfCode
		le.PutUint32(opt[28:], 0x400000)       // ImageBase
		dirs = opt[96:]
		le.PutUint32(opt[92:], 16)
		le.PutUint32(opt[72:], 0x100000) // SizeOfStackReserve
		le.PutUint32(opt[76:], 0x1000)
		le.PutUint32(opt[80:], 0x100000)
		le.PutUint32(opt[84:], 0x1000)
	} else {
		le.PutUint16(opt[0:], 0x20b)
		le.PutUint32(opt[4:], uint32(textRaw))
		le.PutUint32(opt[16:], sectionAlign)
		le.PutUint32(opt[20:], sectionAlign)
		le.PutUint64(opt[24:], 0x140000000)
		dirs = opt[112:]
		le.PutUint32(opt[108:], 16)
		le.PutUint64(opt[72:], 0x100000)
		le.PutUint64(opt[80:], 0x1000)
		le.PutUint64(opt[88:], 0x100000)
		le.PutUint64(opt[96:], 0x1000)
	}
	le.PutUint32(opt[32:], sectionAlign)
	le.PutUint32(opt[36:], fileAlign)
	le.PutUint16(opt[40:], 6) // OS version 6.0
	le.PutUint16(opt[48:], 6) // subsystem version 6.0
	le.PutUint32(opt[56:], uint32(sizeOfImage))
	le.PutUint32(opt[60:], headersSize)
	le.PutUint16(opt[68:], 3)      // console
	le.PutUint16(opt[70:], 0x8160) // dynamic base, NX, high entropy VA, terminal server aware
	if !im.NoResources {
		le.PutUint32(dirs[2*8:], rsrcVA)
		le.PutUint32(dirs[2*8+4:], uint32(len(rsrc)))
	}

	sec := opt[optSize:]
	putSection(sec, ".text", uint32(max(im.TextLen, 1)), sectionAlign, uint32(textRaw), headersSize, 0x60000020)
	if !im.NoResources {
		putSection(sec[40:], ".rsrc", uint32(len(rsrc)), rsrcVA, uint32(rsrcRaw), uint32(headersSize+textRaw), 0x40000040)
	}

	var n int64
	write := func(b []byte) error {
		k, err := w.Write(b)
		n += int64(k)
		return err
	}
	if err := write(h); err != nil {
		return n, err
	}
	text := im.Text
	if text == nil {
		text = zeros{}
	}
	k, err := io.CopyN(w, text, im.TextLen)
	n += k
	if err != nil {
		return n, fmt.Errorf("petest: .text: %w", err)
	}
	if err := write(make([]byte, textRaw-im.TextLen)); err != nil {
		return n, err
	}
	if im.NoResources {
		return n, nil
	}
	if err := write(rsrc); err != nil {
		return n, err
	}
	return n, write(make([]byte, rsrcRaw-int64(len(rsrc))))
}

var le = binary.LittleEndian

func putSection(b []byte, name string, virtSize, va, rawSize, rawPtr, flags uint32) {
	copy(b, name)
	le.PutUint32(b[8:], virtSize)
	le.PutUint32(b[12:], va)
	le.PutUint32(b[16:], rawSize)
	le.PutUint32(b[20:], rawPtr)
	le.PutUint32(b[36:], flags)
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// rsrc is the resource section at rsrcVA: the three directory levels
// (RT_VERSION, name 1, language 0x0409), the data entry, and the data.
func (im Image) rsrc(rsrcVA uint32) []byte {
	data := im.VersionResource()
	b := make([]byte, 0x58, 0x58+len(data))
	dir := func(at int, id, target uint32) {
		le.PutUint16(b[at+14:], 1) // one id entry
		le.PutUint32(b[at+16:], id)
		le.PutUint32(b[at+20:], target)
	}
	const subdir = 1 << 31
	dir(0x00, 16, subdir|0x18)
	dir(0x18, 1, subdir|0x30)
	dir(0x30, 0x0409, 0x48)
	le.PutUint32(b[0x48:], rsrcVA+0x58)
	le.PutUint32(b[0x4c:], uint32(len(data)))
	return append(b, data...)
}

// VersionResource is the RT_VERSION data the image carries: VersionInfo
// when set, else the VS_VERSIONINFO built from the tables and
// translations.
func (im Image) VersionResource() []byte {
	if im.VersionInfo != nil {
		return im.VersionInfo
	}
	return im.versionInfo()
}

// versionInfo is the VS_VERSIONINFO of the tables and translations.
func (im Image) versionInfo() []byte {
	fixed := make([]byte, 52)
	le.PutUint32(fixed[0:], 0xFEEF04BD)
	le.PutUint32(fixed[4:], 0x00010000)
	var tables [][]byte
	for _, t := range im.Tables {
		var strs [][]byte
		for _, s := range t.Strings {
			v := utf16z(s.Value)
			strs = append(strs, Block(s.Key, 1, uint16(len(v)/2), v))
		}
		tables = append(tables, Block(fmt.Sprintf("%04X%04X", t.Lang, t.CodePage), 1, 0, nil, strs...))
	}
	children := [][]byte{Block("StringFileInfo", 1, 0, nil, tables...)}
	if !im.NoTranslation {
		tr := im.Translations
		if tr == nil {
			for _, t := range im.Tables {
				tr = append(tr, uint32(t.Lang)<<16|uint32(t.CodePage))
			}
		}
		v := make([]byte, 4*len(tr))
		for i, x := range tr {
			le.PutUint16(v[4*i:], uint16(x>>16))
			le.PutUint16(v[4*i+2:], uint16(x))
		}
		children = append(children, Block("VarFileInfo", 1, 0, nil, Block("Translation", 0, uint16(len(v)), v)))
	}
	return Block("VS_VERSION_INFO", 0, uint16(len(fixed)), fixed, children...)
}

// Block is one VERSIONINFO node: wLength, wValueLength (valueLen, in the
// unit the node's kind uses), wType, the key, padding, value, padding and
// the children, each aligned to 32 bits. Tests build malformed trees with
// it.
func Block(key string, typ, valueLen uint16, value []byte, children ...[]byte) []byte {
	b := make([]byte, 6)
	b = append(b, utf16z(key)...)
	b = pad4(b)
	b = append(b, value...)
	for _, c := range children {
		b = pad4(b)
		b = append(b, c...)
	}
	le.PutUint16(b[0:], uint16(len(b)))
	le.PutUint16(b[2:], valueLen)
	le.PutUint16(b[4:], typ)
	return b
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// utf16z is s in UTF-16LE with a NUL terminator.
func utf16z(s string) []byte {
	u := append(utf16.Encode([]rune(s)), 0)
	b := make([]byte, 2*len(u))
	for i, c := range u {
		le.PutUint16(b[2*i:], c)
	}
	return b
}
