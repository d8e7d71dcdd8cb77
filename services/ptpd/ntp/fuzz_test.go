package ntp

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port uint16
		bad  bool
	}{
		{"192.0.2.1", "192.0.2.1", 123, false},
		{" 192.0.2.1:1123 ", "192.0.2.1", 1123, false},
		{"ntp.example.org", "ntp.example.org", 123, false},
		{"ntp.example.org.:123", "ntp.example.org.", 123, false},
		{"2001:db8::1", "2001:db8::1", 123, false},
		{"[2001:db8::1]", "2001:db8::1", 123, false},
		{"[2001:db8::1]:4123", "2001:db8::1", 4123, false},
		{"[fe80::1%eth0]:123", "fe80::1%eth0", 123, false},
		{"", "", 0, true},
		{":123", "", 0, true},
		{"host:", "", 0, true},
		{"host:0", "", 0, true},
		{"host:65536", "", 0, true},
		{"host:port", "", 0, true},
		{"[192.0.2.1]:123", "", 0, true},
		{"[2001:db8::1", "", 0, true},
		{"[2001:db8::1]x", "", 0, true},
		{"2001:db8::1:123:zz", "", 0, true},
		{"bad_host name", "", 0, true},
		{"-lead.example", "", 0, true},
		{"a..b", "", 0, true},
		{strings.Repeat("a", 300), "", 0, true},
	} {
		host, port, err := ParseServer(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseServer(%q) = %q, %d; want an error", tc.in, host, port)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("ParseServer(%q) = %q, %d, %v; want %q, %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
}

// FuzzParseServer: any input either fails cleanly or gives a host and
// port that join back into an address that parses to the same.
func FuzzParseServer(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1:123", "[2001:db8::1]:123", "2001:db8::1", "ntp.example.org", "a:b:c", "[", "]:", ":0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := ParseServer(s)
		if err != nil {
			if host != "" || port != 0 {
				t.Fatalf("error with a result: %q %d", host, port)
			}
			return
		}
		if host == "" || port == 0 || len(host) > maxHostLen {
			t.Fatalf("ParseServer(%q) = %q, %d", s, host, port)
		}
		joined := net.JoinHostPort(host, strconv.Itoa(int(port)))
		h2, p2, err := ParseServer(joined)
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("round trip of %q via %q: %q, %d, %v", s, joined, h2, p2, err)
		}
	})
}
