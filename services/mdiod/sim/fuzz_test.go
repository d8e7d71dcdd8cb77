package sim

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseSpec checks that any spec either fails cleanly or gives a
// consistent configuration: bounded, increasing script offsets, a cycle
// longer than the script, a script that round-trips through its text
// form, and a PHY whose BMSR keeps the model's fixed bits at any time.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"", "88e1512", "generic100,link=up", "88e1512,link=up,speed=100,role=slave",
		"88e1512,script=up@2s;down@5s;up/100/slave@6s,cycle=8s", "88e1512,an=0s,script=an@1s;up@1500ms",
		"88e1512,cycle=1s", "88e1512,script=up@2s;down@1s", "x,y=z", "88e1512,script=up/10/master/x@1s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		cfg, err := ParseSpec(spec)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if len(cfg.Script) > maxSteps {
			t.Fatalf("%d steps", len(cfg.Script))
		}
		var texts []string
		for i, s := range cfg.Script {
			if s.Offset < 0 || s.Offset > maxOffset || (i > 0 && s.Offset <= cfg.Script[i-1].Offset) {
				t.Fatalf("step %d offset %v", i, s.Offset)
			}
			texts = append(texts, s.String())
		}
		if cfg.Cycle > 0 && cfg.Cycle <= cfg.Script[len(cfg.Script)-1].Offset {
			t.Fatalf("cycle %v within the script", cfg.Cycle)
		}
		if len(texts) > 0 {
			again, err := ParseScript(strings.Join(texts, ";"), cfg.Initial)
			if err != nil {
				t.Fatalf("reparse %q: %v", texts, err)
			}
			for i := range again {
				if again[i] != cfg.Script[i] {
					t.Fatalf("round trip step %d: %+v != %+v", i, again[i], cfg.Script[i])
				}
			}
		}
		now := time.Unix(0, 0)
		p := New(cfg, func() time.Time { return now })
		for _, d := range []time.Duration{0, time.Second, time.Hour, 48 * time.Hour} {
			now = time.Unix(0, 0).Add(d)
			v, err := p.Read(1)
			if err != nil {
				t.Fatal(err)
			}
			if v&cfg.Model.BMSR != cfg.Model.BMSR || v&^(cfg.Model.BMSR|0x24) != 0 {
				t.Fatalf("BMSR %#04x at %v", v, d)
			}
		}
	})
}
