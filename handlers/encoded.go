package handlers

import (
	"encoding/json"
	"io"
	"reflect"
	"sync"

	"github.com/danielgtaylor/huma/v2"
	"github.com/kanade-fleet/backend"
)

// agentsPage is a roster page storage has already encoded as JSON
// (storage.ListAgentsJSON), written as it is by jsonFormat. The OpenAPI
// document describes it as kanade.Page[kanade.Agent], the type it encodes,
// so the contract reads the same as for a body huma encodes itself. (Not
// generic: each instance costs the Lambda bootstrap, which is held under
// 15 MB, and this is the only one.)
type agentsPage struct {
	json []byte
	// done, when set, is called once the body is written (or found
	// unwritable): the buffer goes back to its pool.
	done func()
}

// Schema is kanade.Page[kanade.Agent]'s: a reference to its named schema.
func (agentsPage) Schema(r huma.Registry) *huma.Schema {
	return r.Schema(reflect.TypeFor[kanade.Page[kanade.Agent]](), true, "")
}

func (e agentsPage) writeJSON(w io.Writer) error {
	if e.done != nil {
		defer e.done()
	}
	if _, err := w.Write(e.json); err != nil {
		return err
	}
	_, err := w.Write([]byte{'\n'})
	return err
}

// jsonFormat is huma's JSON format (encoding/json, no HTML escaping, a
// newline after the value) that writes an agentsPage's bytes as they are,
// with the same newline.
var jsonFormat = huma.Format{
	Marshal: func(w io.Writer, v any) error {
		if e, ok := v.(interface{ writeJSON(io.Writer) error }); ok {
			return e.writeJSON(w)
		}
		return huma.DefaultJSONFormat.Marshal(w, v)
	},
	Unmarshal: json.Unmarshal,
}

// bufferPool keeps the buffers of agentsPage bodies. A buffer over
// maxPooledBuffer is left to the garbage collector, so one huge body does
// not stay in memory for good.
type bufferPool struct{ p sync.Pool }

const maxPooledBuffer = 1 << 20

func (bp *bufferPool) get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func (bp *bufferPool) put(b []byte) {
	if cap(b) <= maxPooledBuffer {
		bp.p.Put(&b)
	}
}
