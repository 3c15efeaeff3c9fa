package kanade

import (
	"bytes"
	"encoding/json"
)

// ScheduleBodyJSON is the JSON a schedule body is stored as in KV
// schedules: a JSON body compacted as sent (members this backend does not
// model survive for readers that do), a YAML body converted with the
// shape-aware scalar reading DecodeScheduleBody uses (at: 09:00 stays the
// text "09:00"). Decode the body with DecodeScheduleBody first; this
// returns the same syntax errors.
func ScheduleBodyJSON(body []byte, isYAML bool) ([]byte, error) {
	if !isYAML {
		var b bytes.Buffer
		if err := json.Compact(&b, body); err != nil {
			return nil, &BodySyntaxError{Format: "JSON", Msg: err.Error()}
		}
		return b.Bytes(), nil
	}
	_, ss := shapes()
	v, err := yamlDocument(body, ss)
	if err != nil {
		return nil, &BodySyntaxError{Format: "YAML", Msg: err.Error()}
	}
	return json.Marshal(v)
}
