package miiioctl

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseSpec: a spec either fails with an error naming it or parses
// into a name the kernel could hold and an address in range, whose
// normalised form parses back to the same Spec and whose request keeps
// the name NUL-terminated.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"eth0", "eth0:1", "enp0s3:31", "lo:0", "eth0:", ":", "eth0:32", "a/b:1", "abcdefghijklmnop"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, params string) {
		s, err := ParseSpec(params)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ioctl backend ") {
				t.Fatalf("error %q does not name the backend", err)
			}
			return
		}
		if s.Interface == "" || len(s.Interface) >= unix.IFNAMSIZ || strings.ContainsAny(s.Interface, ":/ \t\n\v\f\r\x00") {
			t.Fatalf("ParseSpec(%q) accepted interface %q", params, s.Interface)
		}
		if s.Addr > 31 || (!s.FixedAddr && s.Addr != 0) {
			t.Fatalf("ParseSpec(%q) = %+v", params, s)
		}
		name := s.String()
		if !strings.HasPrefix(name, Prefix) {
			t.Fatalf("String() = %q", name)
		}
		again, err := ParseSpec(strings.TrimPrefix(name, Prefix))
		if err != nil || again != s {
			t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v", name, again, err, s)
		}
		r := miiRequest(s.Interface, 0, 0, 0)
		if string(r[:len(s.Interface)]) != s.Interface || r[len(s.Interface)] != 0 || r[unix.IFNAMSIZ-1] != 0 {
			t.Fatalf("request name bytes %q for %q", r[:unix.IFNAMSIZ], s.Interface)
		}
	})
}
