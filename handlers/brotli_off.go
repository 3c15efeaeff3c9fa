//go:build kanade.nobrotli

package handlers

import "errors"

// brotliBuilt is false in a build without the brotli encoder (see
// brotli.go): spaCoding never picks brotli, so brotliBytes is not called.
const brotliBuilt = false

func brotliBytes([]byte) ([]byte, error) { return nil, errors.New("handlers: built without brotli") }
