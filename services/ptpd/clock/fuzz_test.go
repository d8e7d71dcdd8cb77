package clock

import (
	"fmt"
	"math"
	"strconv"
	"testing"
)

// FuzzParseVirtual: any accepted spec has a finite, in-range frequency
// and round-trips through its canonical form.
func FuzzParseVirtual(f *testing.F) {
	for _, s := range []string{"500us,30", "-2ms,-12.5", "0s,0", "1s,1000", "1h,1e3", ",", "500us,", "x,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		off, ppm, err := ParseVirtualSpec(s)
		if err != nil {
			return
		}
		if math.IsNaN(ppm) || math.Abs(ppm) > maxVirtualPPM {
			t.Fatalf("%q: ppm %v accepted", s, ppm)
		}
		canon := fmt.Sprintf("%v,%s", off, strconv.FormatFloat(ppm, 'g', -1, 64))
		off2, ppm2, err := ParseVirtualSpec(canon)
		if err != nil || off2 != off || ppm2 != ppm {
			t.Fatalf("%q → %q → %v,%v,%v", s, canon, off2, ppm2, err)
		}
	})
}
