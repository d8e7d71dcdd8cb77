// Package cliflag holds the flag types tickbox's programs share.
package cliflag

import "strings"

// List is a repeatable string flag. Its initial values are a default:
// the first value given on the command line replaces them, later ones
// are appended.
type List struct {
	Values []string
	set    bool
}

// NewList returns a List holding a copy of defaults.
func NewList(defaults ...string) *List {
	return &List{Values: append([]string(nil), defaults...)}
}

func (l *List) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.Values, ",")
}

// Set implements flag.Value.
func (l *List) Set(v string) error {
	if !l.set {
		l.Values, l.set = nil, true
	}
	l.Values = append(l.Values, v)
	return nil
}
