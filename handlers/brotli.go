//go:build !kanade.nobrotli

package handlers

import (
	"bytes"

	"github.com/andybalholm/brotli"
)

// brotliBuilt says the dashboard files are offered in brotli. The Lambda
// bootstrap is built without (tag kanade.nobrotli): the encoder is half a
// megabyte of a binary whose size is its cold start, and a CDN in front of
// API Gateway compresses with brotli anyway; it serves gzip.
const brotliBuilt = true

// brotliBytes is data compressed with brotli at spaBrotliLevel.
func brotliBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := brotli.NewWriterLevel(&buf, spaBrotliLevel)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// spaBrotliLevel is the brotli quality of the assets. Each file is
// compressed once per process, but on the first request for it (a Lambda
// cold start included): on the dashboard's 108 KB script quality 6 takes
// about 15 ms for 30.2 KB, where the best (11) takes about a second under
// load for 27.4 KB.
const spaBrotliLevel = 6
