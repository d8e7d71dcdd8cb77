// Package jsonenc is the one JSON encoder of the control plane's JSON
// front ends. It appends a reply's values to a byte slice without
// reflection for the types handlers return (maps, lists, strings,
// numbers) and in the layout each peer expects:
//
//   - Append encodes a value in a Style;
//   - Spaced is Kea's toJSON layout, Compact nose's;
//   - AppendString quotes a string for both;
//   - Kind names a decoded value's type in the words of error texts.
package jsonenc

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Style selects the layout and the handling of values JSON cannot hold.
// The two peers differ, and each front end keeps its peer's bytes.
type Style int

const (
	// Spaced is Kea's Element::toJSON layout: "{ "k": v, ... }" with
	// keys sorted, "[ a, b ]", an empty map or list as "{  }" or "[  ]",
	// and floats in their shortest form. It never fails: a value JSON
	// cannot hold is written as something it can (NaN and infinities
	// as null, where Kea writes "nan.0", which no JSON reader takes;
	// a value encoding/json refuses as a string saying why). Values of
	// other Go types go through encoding/json and are then laid out
	// alike, so a struct's fields come out sorted.
	Spaced Style = iota
	// Compact is nose's layout: no spaces, keys sorted, floats as
	// encoding/json writes them. A value JSON cannot hold is an error
	// (nose would print "nan", which no JSON reader takes), so that the
	// front end can answer with an error instead. Values of other Go
	// types are written as encoding/json writes them.
	Compact
)

// Append appends v encoded in style s. Only Compact returns errors.
func Append(b []byte, v any, s Style) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return AppendString(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uintptr:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case float64:
		return appendFloat(b, x, 64, s)
	case float32:
		if s == Spaced {
			return appendFloat(b, float64(x), 32, s)
		}
	case []any:
		return appendList(b, len(x), s, func(b []byte, i int) ([]byte, error) { return Append(b, x[i], s) })
	case []string:
		return appendList(b, len(x), s, func(b []byte, i int) ([]byte, error) { return AppendString(b, x[i]), nil })
	case map[string]any:
		return appendMap(b, x, s)
	case json.RawMessage:
		if s == Compact {
			if !json.Valid(x) {
				return nil, errors.New("invalid json.RawMessage")
			}
			return append(b, x...), nil
		}
		return Append(b, decode(x), s)
	case json.Number:
		if s == Spaced {
			if x == "" {
				return append(b, '0'), nil
			}
			if isNumber(string(x)) {
				return append(b, x...), nil
			}
			return AppendString(b, fmt.Sprintf("unencodable value: invalid number %q", string(x))), nil
		}
	}
	// Typed maps, structs, json.Number (Compact) and the rest.
	enc, err := json.Marshal(v)
	if s == Compact {
		if err != nil {
			return nil, err
		}
		return append(b, enc...), nil
	}
	if err != nil {
		return AppendString(b, fmt.Sprintf("unencodable value: %v", err)), nil
	}
	return Append(b, decode(enc), s)
}

// isNumber reports whether s is a JSON number.
func isNumber(s string) bool {
	return s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) && json.Valid([]byte(s))
}

// decode decodes JSON produced by encoding/json into plain values, with
// numbers kept as written.
func decode(raw []byte) any {
	var out any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&out); err != nil {
		return fmt.Sprintf("undecodable value: %v", err)
	}
	return out
}

func appendList(b []byte, n int, s Style, elem func([]byte, int) ([]byte, error)) ([]byte, error) {
	open, sep, end := "[", ",", "]"
	if s == Spaced {
		if n == 0 {
			return append(b, "[  ]"...), nil
		}
		open, sep, end = "[ ", ", ", " ]"
	}
	b = append(b, open...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, sep...)
		}
		var err error
		if b, err = elem(b, i); err != nil {
			return nil, err
		}
	}
	return append(b, end...), nil
}

func appendMap(b []byte, m map[string]any, s Style) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	open, sep, colon, end := "{", ",", ":", "}"
	if s == Spaced {
		if len(keys) == 0 {
			return append(b, "{  }"...), nil
		}
		open, sep, colon, end = "{ ", ", ", ": ", " }"
	}
	b = append(b, open...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, sep...)
		}
		b = AppendString(b, k)
		b = append(b, colon...)
		var err error
		if b, err = Append(b, m[k], s); err != nil {
			return nil, err
		}
	}
	return append(b, end...), nil
}

// appendFloat writes f in style s: Spaced in the shortest form
// strconv gives, Compact as encoding/json does (plain notation for
// ordinary magnitudes, an exponent without padding for very small and
// very large ones).
func appendFloat(b []byte, f float64, bits int, s Style) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		if s == Spaced {
			return append(b, "null"...), nil
		}
		return nil, fmt.Errorf("unsupported value: %v", f)
	}
	if s == Spaced {
		return strconv.AppendFloat(b, f, 'g', -1, bits), nil
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// AppendString quotes s as a JSON string for both styles. It escapes as
// Kea's encoder does (the short forms \b \f \n \r \t, other control
// characters and DEL as \u00XX), turns invalid UTF-8 into U+FFFD so the
// output is always valid JSON, escapes U+2028/U+2029 so a
// line-oriented consumer that evaluates lines as JavaScript is safe, and
// leaves HTML characters alone. Runs of plain bytes are copied at once:
// this is on every reply's path.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Kind names a decoded JSON value's type as Kea's Element::typeToName
// does ("integer", "real", "map", ...); error texts of every front end
// use these words.
func Kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "real"
		}
		return "integer"
	case float64:
		return "real"
	case int64, int:
		return "integer"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}
