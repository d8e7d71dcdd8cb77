package bitbang

import (
	"strings"
	"testing"
)

// FuzzParseSpec: a spec either fails with an error naming the backend or
// yields two distinct non-empty pins, an address and rate in range, and a
// normalised form that parses back to the same Spec.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"mdc=GPIO17,mdio=GPIO27", "mdc=a,mdio=b,addr=1,rate=max", "mdc=a,mdio=b,rate=100000", "mdc=a,mdio=a", "mdc=a,mdc=b", ",", "=,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, params string) {
		s, err := ParseSpec(params)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gpio backend ") {
				t.Fatalf("error %q does not name the backend", err)
			}
			return
		}
		if s.MDC == "" || s.MDIO == "" || s.MDC == s.MDIO || strings.Contains(s.MDC+s.MDIO, ",") {
			t.Fatalf("ParseSpec(%q) pins %q %q", params, s.MDC, s.MDIO)
		}
		if s.Addr > 31 || checkRate(s.Rate) != nil || s.Name != "" {
			t.Fatalf("ParseSpec(%q) = %+v", params, s)
		}
		norm := s.String()
		again, err := ParseSpec(strings.TrimPrefix(norm, Prefix))
		if err != nil || again != s || !strings.HasPrefix(norm, Prefix) {
			t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v", norm, again, err, s)
		}
	})
}
