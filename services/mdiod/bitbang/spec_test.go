package bitbang

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Spec
		norm    string
		wantErr string
	}{
		{in: "mdc=GPIO17,mdio=GPIO27", want: Spec{MDC: "GPIO17", MDIO: "GPIO27", Options: Options{Rate: DefaultRate}}, norm: "gpio:mdc=GPIO17,mdio=GPIO27,addr=0"},
		{in: "mdio=GPIO27,addr=1,mdc=GPIO17", want: Spec{MDC: "GPIO17", MDIO: "GPIO27", Options: Options{Addr: 1, Rate: DefaultRate}}, norm: "gpio:mdc=GPIO17,mdio=GPIO27,addr=1"},
		{in: "mdc=5,mdio=6,addr=31,rate=100000", want: Spec{MDC: "5", MDIO: "6", Options: Options{Addr: 31, Rate: 100000}}, norm: "gpio:mdc=5,mdio=6,addr=31,rate=100000"},
		{in: "mdc=a,mdio=b,rate=max", want: Spec{MDC: "a", MDIO: "b"}, norm: "gpio:mdc=a,mdio=b,addr=0,rate=max"},
		{in: "mdc=a,mdio=b,rate=0", want: Spec{MDC: "a", MDIO: "b"}, norm: "gpio:mdc=a,mdio=b,addr=0,rate=max"},
		{in: "mdc=a,mdio=b,rate=2500000", want: Spec{MDC: "a", MDIO: "b", Options: Options{Rate: DefaultRate}}, norm: "gpio:mdc=a,mdio=b,addr=0"},
		{in: "mdc=a,mdio=b,rate=1000", want: Spec{MDC: "a", MDIO: "b", Options: Options{Rate: 1000}}, norm: "gpio:mdc=a,mdio=b,addr=0,rate=1000"},
		{in: "", wantErr: `"" is not key=value`},
		{in: "mdc=a", wantErr: "missing mdio=PIN"},
		{in: "mdio=a", wantErr: "missing mdc=PIN"},
		{in: "mdc=a,mdio=b,", wantErr: `"" is not key=value`},
		{in: "mdc=a,mdio=b,mdc=c", wantErr: `duplicate key "mdc"`},
		{in: "mdc=a,mdio=b,addr=1,addr=1", wantErr: `duplicate key "addr"`},
		{in: "mdc=a,mdio=a", wantErr: `mdc and mdio are the same pin "a"`},
		{in: "mdc=,mdio=b", wantErr: `empty value for "mdc"`},
		{in: "mdc=a,mdio=b,addr=32", wantErr: `addr "32" is not a number in 0..31`},
		{in: "mdc=a,mdio=b,addr=-1", wantErr: "is not a number"},
		{in: "mdc=a,mdio=b,addr=0x1", wantErr: "is not a number"},
		{in: "mdc=a,mdio=b,rate=fast", wantErr: `rate "fast" is not a frequency`},
		{in: "mdc=a,mdio=b,rate=2500001", wantErr: "rate 2500001 Hz outside 1000..2500000"},
		{in: "mdc=a,mdio=b,rate=999", wantErr: "rate 999 Hz outside"},
		{in: "mdc=a,mdio=b,rate=99999999999", wantErr: "is not a frequency"},
		{in: "mdc=a,mdio=b,speed=1", wantErr: `unknown key "speed"`},
		{in: "mdc=a,mdio=b,addr", wantErr: `"addr" is not key=value`},
	} {
		got, err := ParseSpec(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "gpio backend ") {
				t.Errorf("ParseSpec(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.norm {
			t.Errorf("ParseSpec(%q) = %+v (%q), %v; want %+v (%q)", tc.in, got, got.String(), err, tc.want, tc.norm)
		}
	}
}

// TestOpen looks pins up through periph's registry on this host, where
// none of these names exist.
func TestOpen(t *testing.T) {
	for _, tc := range []struct{ params, want string }{
		{"mdc=TBNOPE1,mdio=TBNOPE2", `gpio backend "mdc=TBNOPE1,mdio=TBNOPE2": unknown pin "TBNOPE1" for mdc`},
		{"mdc=a,mdio=b,addr=99", `addr "99" is not a number`},
		{"mdc=a", "missing mdio=PIN"},
	} {
		p, err := Open(tc.params)
		if err == nil {
			p.Close()
			t.Fatalf("Open(%q) succeeded", tc.params)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want %q", tc.params, err, tc.want)
		}
	}
}
