package cliflag

import (
	"flag"
	"reflect"
	"testing"
)

func TestList(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{"a", "b"}},
		{[]string{"-x", "c"}, []string{"c"}},
		{[]string{"-x", "c", "-x", "d"}, []string{"c", "d"}},
		{[]string{"-x", ""}, []string{""}},
	}
	for _, tc := range tests {
		l := NewList("a", "b")
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.Var(l, "x", "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(l.Values, tc.want) {
			t.Errorf("%q: %q, want %q", tc.args, l.Values, tc.want)
		}
	}
	def := []string{"a"}
	l := NewList(def...)
	l.Set("z")
	if def[0] != "a" {
		t.Fatal("Set changed the caller's defaults")
	}
}
