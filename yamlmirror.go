package kanade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The YAML mirrors of KV jobs_yaml and schedules_yaml (control.md §5.3,
// §5.7). Only the SPA's editor reads them: the scheduler and agents read
// the JSON records. When an operator sent YAML, the mirror is that text
// as sent (comments and block scalars are why it exists); otherwise it is
// RenderYAML of the stored record, and an enable or disable patches the
// one line PatchEnabled touches rather than re-rendering what the
// operator wrote.

// RenderYAML renders a record as YAML for its mirror: v is the stored
// JSON ([]byte or json.RawMessage) or a value encoding/json can marshal
// (a Manifest, a Schedule). Members keep their JSON order, numbers keep
// their JSON text, and a string is written plain only where every YAML
// reader (serde_yaml, the editor's YAML 1.1 and 1.2 schemas) reads it
// back as that string: "1.10", "09:00", "2026-01-01", "on" and "null" are
// quoted. Multi-line strings (scripts) become literal blocks. Reading the
// output with DecodeManifestBody or DecodeScheduleBody gives the record
// back.
func RenderYAML(v any) ([]byte, error) {
	var data []byte
	switch x := v.(type) {
	case json.RawMessage:
		data = x
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("render YAML: %w", err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	doc, err := orderedJSON(dec)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON value")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("render YAML: the record is not JSON: %w", err)
	}
	var b bytes.Buffer
	switch d := doc.(type) {
	case yamlMap:
		if len(d) == 0 {
			b.WriteString("{}\n")
		}
		writeYAMLMap(&b, d, 0)
	case []any:
		if len(d) == 0 {
			b.WriteString("[]\n")
		}
		writeYAMLSeq(&b, d, 0)
	default:
		b.WriteString(yamlScalar(d))
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// yamlMap is a JSON object with its members in order.
type yamlMap []yamlMember

type yamlMember struct {
	key   string
	value any
}

// orderedJSON reads the next JSON value of dec, objects as yamlMap. A
// member given twice keeps its first place and its last value, as
// encoding/json reads it.
func orderedJSON(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if d == '[' {
		out := []any{}
		for dec.More() {
			v, err := orderedJSON(dec)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		_, err := dec.Token()
		return out, err
	}
	out := yamlMap{}
	index := map[string]int{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		v, err := orderedJSON(dec)
		if err != nil {
			return nil, err
		}
		if i, dup := index[k]; dup {
			out[i].value = v
			continue
		}
		index[k] = len(out)
		out = append(out, yamlMember{k, v})
	}
	_, err = dec.Token()
	return out, err
}

func writeIndent(b *bytes.Buffer, n int) {
	for range n {
		b.WriteByte(' ')
	}
}

// writeYAMLMap writes the members of m at indent; the first one's key is
// written without indent when the caller already placed the cursor (a
// sequence entry's "- ").
func writeYAMLMap(b *bytes.Buffer, m yamlMap, indent int) {
	for i, mem := range m {
		if i > 0 || b.Len() == 0 || b.Bytes()[b.Len()-1] == '\n' {
			writeIndent(b, indent)
		}
		b.WriteString(yamlScalar(mem.key))
		b.WriteByte(':')
		writeYAMLValue(b, mem.value, indent)
	}
}

// writeYAMLSeq writes the entries of s at indent, each "- " then its value.
func writeYAMLSeq(b *bytes.Buffer, s []any, indent int) {
	for i, v := range s {
		if i > 0 || b.Len() == 0 || b.Bytes()[b.Len()-1] == '\n' {
			writeIndent(b, indent)
		}
		b.WriteString("-")
		// A mapping starts on the dash's line ("- key: v"); everything else
		// follows it as it would follow "key:".
		if m, ok := v.(yamlMap); ok && len(m) > 0 {
			b.WriteByte(' ')
			writeYAMLMap(b, m, indent+2)
			continue
		}
		writeYAMLValue(b, v, indent)
	}
}

// writeYAMLValue writes what follows "key:" or "-" at indent: a scalar on
// the same line, a block below it.
func writeYAMLValue(b *bytes.Buffer, v any, indent int) {
	switch x := v.(type) {
	case yamlMap:
		if len(x) == 0 {
			b.WriteString(" {}\n")
			return
		}
		b.WriteByte('\n')
		writeYAMLMap(b, x, indent+2)
	case []any:
		if len(x) == 0 {
			b.WriteString(" []\n")
			return
		}
		b.WriteByte('\n')
		writeYAMLSeq(b, x, indent+2)
	case string:
		if header, ok := literalHeader(x); ok {
			b.WriteString(" " + header + "\n")
			for _, line := range strings.SplitAfter(strings.TrimRight(x, "\n"), "\n") {
				if line != "\n" {
					writeIndent(b, indent+2)
				}
				b.WriteString(line)
			}
			b.WriteByte('\n')
			for range len(x) - len(strings.TrimRight(x, "\n")) - 1 {
				b.WriteByte('\n')
			}
			return
		}
		b.WriteString(" " + yamlScalar(x) + "\n")
	default:
		b.WriteString(" " + yamlScalar(x) + "\n")
	}
}

// literalHeader is the block header ("|", "|-" or "|+") under which s can
// be written as a literal block and read back unchanged, or false when it
// cannot be: a single line, a character YAML does not print, a tab or a
// carriage return, a line of only spaces, or a first line that starts
// with a space (its indentation would be misread).
func literalHeader(s string) (string, bool) {
	if !strings.Contains(s, "\n") || strings.TrimRight(s, "\n") == "" || strings.HasPrefix(s, " ") {
		return "", false
	}
	for _, line := range strings.Split(s, "\n") {
		if line != "" && strings.TrimLeft(line, " ") == "" {
			return "", false
		}
	}
	for _, r := range s {
		if r != '\n' && (r == '\t' || r == '\uFEFF' || !unicode.IsPrint(r) && r != ' ') {
			return "", false
		}
	}
	switch trailing := len(s) - len(strings.TrimRight(s, "\n")); trailing {
	case 0:
		return "|-", true
	case 1:
		return "|", true
	default:
		return "|+", true
	}
}

// plainSafe matches the strings written without quotes: a letter, '_' or
// '/' first, then letters, digits and -_./=+@, single spaces between
// words. No YAML schema reads such a string as anything but itself,
// except the words yamlReserved lists.
var plainSafe = regexp.MustCompile(`^[A-Za-z_/][-A-Za-z0-9_./=+@]*(?: [-A-Za-z0-9_./=+@]+)*$`)

// plainDuration matches duration text such as 90s, 5m, 1h30m or 1.5d,
// which starts with a digit but is a number or a date in no YAML schema.
var plainDuration = regexp.MustCompile(`^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|ms|s|m|h|d))+$`)

// yamlReserved are the plain words YAML 1.1 or 1.2 read as a boolean or
// null (compared case-insensitively).
var yamlReserved = map[string]bool{"null": true, "true": true, "false": true, "yes": true, "no": true,
	"on": true, "off": true, "y": true, "n": true}

// yamlScalar is the YAML text of a JSON scalar.
func yamlScalar(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case json.Number:
		return x.String()
	case string:
		if (plainSafe.MatchString(x) && !yamlReserved[strings.ToLower(x)]) || plainDuration.MatchString(x) {
			return x
		}
		return yamlQuote(x)
	}
	return yamlQuote(fmt.Sprint(v))
}

// yamlQuote writes s as a double-quoted YAML scalar. JSON's string
// escapes are all YAML escapes too; only characters YAML does not print
// (and the line separators) are escaped, the rest stays readable.
func yamlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError || r == '\uFEFF' || r == '\u2028' || r == '\u2029' || !unicode.IsPrint(r) && r != ' ':
			if r > 0xFFFF {
				fmt.Fprintf(&b, `\U%08X`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// PatchEnabled sets the top-level enabled: of a schedule's YAML mirror
// (control.md §5.7), so the editor does not load the old state and write
// it back on the next save. The first line that starts at column 0 with
// "enabled:" becomes "enabled: true" or "enabled: false" (anything after
// it on that line, a comment included, goes: it described the old value);
// without one, the line is appended, after a line break when the text
// does not end in one. Every other byte is kept, line endings included:
// the mirror exists for the operator's comments and formatting. A line
// ending in CRLF keeps its CRLF, and an appended line takes the ending of
// the text's last line.
func PatchEnabled(text []byte, enabled bool) []byte {
	value := "enabled: false"
	if enabled {
		value = "enabled: true"
	}
	out := make([]byte, 0, len(text)+len(value)+2)
	rest := text
	for len(rest) > 0 {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		if bytes.HasPrefix(line, []byte("enabled:")) {
			out = append(out, text[:len(text)-len(rest)]...)
			out = append(out, value...)
			if found {
				if bytes.HasSuffix(line, []byte("\r")) {
					out = append(out, '\r')
				}
				out = append(out, '\n')
			}
			return append(out, after...)
		}
		if !found {
			break
		}
		rest = after
	}
	eol := "\n"
	if bytes.HasSuffix(text, []byte("\r\n")) || !bytes.HasSuffix(text, []byte("\n")) && bytes.Contains(text, []byte("\r\n")) {
		eol = "\r\n"
	}
	out = append(out, text...)
	if len(text) > 0 && !bytes.HasSuffix(text, []byte("\n")) {
		out = append(out, eol...)
	}
	return append(append(out, value...), eol...)
}
