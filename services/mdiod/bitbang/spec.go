package bitbang

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// Prefix is the backend spec prefix this package handles.
const Prefix = "gpio:"

// Spec is a parsed "mdc=PIN,mdio=PIN[,addr=N][,rate=HZ]".
type Spec struct {
	MDC, MDIO string // pin names for gpioreg.ByName
	// Addr and Rate as in Options; Rate is DefaultRate when the spec
	// has no rate key and 0 for "rate=max" (or "rate=0"). Name is unused.
	Options
}

// String is the normalised backend spec: keys in a fixed order, addr
// always present, rate only when not the default.
func (s Spec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%smdc=%s,mdio=%s,addr=%d", Prefix, s.MDC, s.MDIO, s.Addr)
	switch s.Rate {
	case DefaultRate:
	case 0:
		b.WriteString(",rate=max")
	default:
		fmt.Fprintf(&b, ",rate=%d", s.Rate)
	}
	return b.String()
}

// ParseSpec parses what follows "gpio:" in a backend spec.
func ParseSpec(params string) (Spec, error) {
	s := Spec{Options: Options{Rate: DefaultRate}}
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("gpio backend %q: %s", params, fmt.Sprintf(format, a...))
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad("%q is not key=value", kv)
		}
		if seen[k] {
			return bad("duplicate key %q", k)
		}
		seen[k] = true
		if v == "" {
			return bad("empty value for %q", k)
		}
		switch k {
		case "mdc":
			s.MDC = v
		case "mdio":
			s.MDIO = v
		case "addr":
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil || n > mdio.MaxPHYAdr {
				return bad("addr %q is not a number in 0..%d", v, mdio.MaxPHYAdr)
			}
			s.Addr = uint8(n)
		case "rate":
			if v == "max" {
				s.Rate = 0
				break
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return bad("rate %q is not a frequency in Hz or \"max\"", v)
			}
			if err := checkRate(int(n)); err != nil {
				return bad("%v", err)
			}
			s.Rate = int(n)
		default:
			return bad("unknown key %q (want mdc, mdio, addr, rate)", k)
		}
	}
	switch {
	case s.MDC == "":
		return bad("missing mdc=PIN")
	case s.MDIO == "":
		return bad("missing mdio=PIN")
	case s.MDC == s.MDIO:
		return bad("mdc and mdio are the same pin %q", s.MDC)
	}
	return s, nil
}

// checkRate accepts 0 (unthrottled) and MinRate..MaxRate.
func checkRate(hz int) error {
	if hz != 0 && (hz < MinRate || hz > MaxRate) {
		return fmt.Errorf("rate %d Hz outside %d..%d (IEEE 802.3 caps MDC at 2.5 MHz; \"max\" runs unthrottled)", hz, MinRate, MaxRate)
	}
	return nil
}
