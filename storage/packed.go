package storage

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// Long texts (a run's stdout and stderr, an inventory report's facts_json)
// are stored compressed (raw DEFLATE after a 4-byte mark), as a BLOB in
// their TEXT column; short ones, and any that would not shrink, as TEXT.
// An inventory report is 20 KB of JSON that compresses about fivefold,
// and it was written twice per report (the run's stdout and the PC's
// facts): its overflow pages, copied into the WAL at every commit, were
// the largest part of what a tenth of inventory reports cost the projector
// (bench/ingest -inventory 0.1). DEFLATE rather than zstd, which packs a
// little faster and smaller: klauspost's flate is in every binary already
// (gzhttp), while zstd added 490 KB to the Lambda bootstrap, over its 15 MB
// target.
//
// The column's storage class tells the forms apart: a BLOB is always a
// packed text, since nothing else in these columns is ever bound as one.
// Rows written before this are TEXT and read as they are. Nothing reads
// these columns in SQL; every read goes through packedText.

// packMin is the shortest text worth packing: below it a text fits in its
// row's page anyway.
const packMin = 1024

// packMark starts every packed text. Valid UTF-8 never holds 0xFF, and
// every text stored is valid UTF-8 (decoded from JSON), so a driver that
// hands a TEXT column over as bytes is still told apart.
var packMark = []byte{0xff, 'k', 'd', 1}

// packWriters reuse DEFLATE state (hundreds of KB each) between texts.
var packWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed) // a valid level never fails
	return w
}}

// maxUnpacked bounds what one stored text may unpack to; a frame claiming
// more is corrupt (the projector bounds outputs far below it).
const maxUnpacked = 256 << 20

// packText is the value to bind for s: s itself, or its packed form when s
// is long and the packed form shorter.
func packText(s string) any {
	if len(s) < packMin {
		return s
	}
	var b bytes.Buffer
	b.Grow(len(s) / 3)
	b.Write(packMark)
	w := packWriters.Get().(*flate.Writer)
	defer packWriters.Put(w)
	w.Reset(&b)
	if _, err := io.WriteString(w, s); err != nil || w.Close() != nil || b.Len() >= len(s) {
		return s
	}
	return b.Bytes()
}

// packedText scans a column written with packText (or before it, as TEXT).
// Valid is false for NULL.
type packedText struct {
	String string
	Valid  bool
}

// Scan implements sql.Scanner.
func (p *packedText) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*p = packedText{}
	case string:
		*p = packedText{String: v, Valid: true}
	case []byte:
		s, err := unpack(v)
		if err != nil {
			return err
		}
		*p = packedText{String: s, Valid: true}
	default:
		return fmt.Errorf("packed text: unexpected %T", src)
	}
	return nil
}

// ptr is the text, nil for NULL.
func (p packedText) ptr() *string {
	if !p.Valid {
		return nil
	}
	return &p.String
}

// unpack is the text of a stored BLOB.
func unpack(b []byte) (string, error) {
	if !bytes.HasPrefix(b, packMark) {
		return string(b), nil
	}
	r := flate.NewReader(bytes.NewReader(b[len(packMark):]))
	defer r.Close()
	out, err := io.ReadAll(io.LimitReader(r, maxUnpacked+1))
	if err != nil || len(out) > maxUnpacked {
		return "", fmt.Errorf("stored text: corrupt (%v)", err)
	}
	return string(out), nil
}
