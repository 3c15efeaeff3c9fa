package storage

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Long texts (a run's stdout and stderr, an inventory report's facts_json)
// are stored zstd-compressed, as a BLOB in their TEXT column; short ones,
// and any that would not shrink, as TEXT. An inventory report is 20 KB of
// JSON that compresses about fivefold, and it was written twice per
// report (the run's stdout and the PC's facts): its overflow pages, copied
// into the WAL at every commit, were the largest part of what a tenth of
// inventory reports cost the projector (bench/ingest -inventory 0.1).
//
// The column's storage class tells the forms apart: a BLOB is always a
// zstd frame, since nothing else in these columns is ever bound as one.
// Rows written before this are TEXT and read as they are. Nothing reads
// these columns in SQL; every read goes through packedText.

// packMin is the shortest text worth a zstd frame: below it a text fits
// in its row's page anyway.
const packMin = 1024

// The codec is shared: EncodeAll and DecodeAll are safe for concurrent use,
// and an encoder's tables are worth keeping between calls.
var (
	packEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic("storage: zstd encoder: " + err.Error()) // only for invalid options
		}
		return e
	})
	packDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxMemory(maxUnpacked))
		if err != nil {
			panic("storage: zstd decoder: " + err.Error())
		}
		return d
	})
)

// maxUnpacked bounds what one stored text may unpack to; a frame claiming
// more is corrupt (the projector bounds outputs far below it).
const maxUnpacked = 256 << 20

// packText is the value to bind for s: s itself, or its zstd frame when s
// is long and the frame shorter.
func packText(s string) any {
	if len(s) < packMin {
		return s
	}
	b := packEncoder().EncodeAll([]byte(s), make([]byte, 0, len(s)/3))
	if len(b) >= len(s) {
		return s
	}
	return b
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

// zstdMagic starts every zstd frame. Valid UTF-8 never starts with it (0xB5
// cannot follow an ASCII byte), so a driver that hands a TEXT column over
// as bytes is still told apart.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// unpack is the text of a stored BLOB.
func unpack(b []byte) (string, error) {
	if !bytes.HasPrefix(b, zstdMagic) {
		return string(b), nil
	}
	out, err := packDecoder().DecodeAll(b, nil)
	if err != nil {
		return "", fmt.Errorf("stored text: %w", err)
	}
	return string(out), nil
}
