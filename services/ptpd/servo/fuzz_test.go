package servo

import "testing"

// FuzzParseClockControl: accepted values round-trip through String.
func FuzzParseClockControl(f *testing.F) {
	for _, s := range []string{"slew-and-step", "STEP-AT-STARTUP", " no-step", "no-adjust", "step-forward", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClockControl(s)
		if err != nil {
			return
		}
		c2, err := ParseClockControl(c.String())
		if err != nil || c2 != c {
			t.Fatalf("%q → %v → %v %v", s, c, c2, err)
		}
	})
}
