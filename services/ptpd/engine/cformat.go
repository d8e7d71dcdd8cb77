package engine

import (
	"math"
	"strconv"
)

// cG formats v as C's printf "%.<prec>g" does, with glibc's spelling of
// the non-finite values ("nan", "-nan", "inf", "-inf"): sfptpd's log
// lines and tables are printed that way, and scripts match them.
func cG(prec int, v float64) string {
	if s, ok := cNonFinite(v); ok {
		return s
	}
	return strconv.FormatFloat(v, 'g', prec, 64)
}

// cFloat is C's "%.<prec>f".
func cFloat(f float64, prec int) string {
	if s, ok := cNonFinite(f); ok {
		return s
	}
	return strconv.FormatFloat(f, 'f', prec, 64)
}

// cNonFinite spells NaN and the infinities as glibc's printf does.
func cNonFinite(f float64) (string, bool) {
	switch {
	case math.IsNaN(f):
		if math.Signbit(f) {
			return "-nan", true
		}
		return "nan", true
	case math.IsInf(f, 1):
		return "inf", true
	case math.IsInf(f, -1):
		return "-inf", true
	}
	return "", false
}
