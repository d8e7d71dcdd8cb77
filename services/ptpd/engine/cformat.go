package engine

import (
	"math"
	"strconv"
)

// cG formats v as C's printf "%.<prec>g" does, with glibc's spelling of
// the non-finite values ("nan", "-nan", "inf", "-inf"): sfptpd's log
// lines and tables are printed that way, and scripts match them.
func cG(prec int, v float64) string {
	switch {
	case math.IsNaN(v):
		if math.Signbit(v) {
			return "-nan"
		}
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	return strconv.FormatFloat(v, 'g', prec, 64)
}
