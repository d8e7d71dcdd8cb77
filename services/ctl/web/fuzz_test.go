package web

import (
	"context"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/tickbox-fw/tickbox/services/ctl/hub"
)

// echoSource answers every command of every daemon with the same
// arguments.
type echoSource struct{ args []byte }

func (e echoSource) Services() []string { return []string{"ptpd", "mctpd", "mdiod", "appliance"} }

func (e echoSource) ServicesGet(context.Context) []hub.ServiceState {
	return []hub.ServiceState{{Service: "ptpd", Up: true, Version: string(e.args)}}
}

func (e echoSource) Command(context.Context, string, string, map[string]any) (hub.Reply, error) {
	return hub.Reply{Arguments: e.args}, nil
}

// FuzzDecode feeds arbitrary arguments to every reply decoder, then to a
// page whose every daemon answers them: nothing may panic, the snapshot
// must encode, the page must render with its scripts intact, and every
// list and text must stay within its bound.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := json.RawMessage(data)
		decodeInstances(raw)
		decodeEndpoint(raw)
		decodeRoutes(raw)
		decodeStats(raw)
		decodePorts(raw)
		decodeLinks(raw)
		var pt Port
		decodePhyStatus(raw, &pt)
		decodeMDIOEvents(raw)
		decodeApplianceEvents(raw)

		p := New(echoSource{data}, Options{Logger: quiet()})
		p.Poll(context.Background())
		s := p.Snapshot(0)
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("snapshot does not encode: %v", err)
		}
		renderOK(t, p)
		lists := []int{len(s.PTP.Instances), len(s.MCTP.Routes), len(s.MDIO.Ports), len(s.MDIO.Events), len(s.Appliance.Events)}
		if s.MCTP.Stats != nil {
			lists = append(lists, len(s.MCTP.Stats.Drops), len(s.MCTP.Stats.Messages))
		}
		for _, n := range lists {
			if n > maxItems {
				t.Fatalf("a list of %d", n)
			}
		}
		texts := []string{}
		for _, in := range s.PTP.Instances {
			texts = append(texts, in.Name, in.State, in.Master)
		}
		for _, e := range append(s.MDIO.Events, s.Appliance.Events...) {
			texts = append(texts, e.What, e.Text)
		}
		for _, pt := range s.MDIO.Ports {
			texts = append(texts, pt.Name, pt.Backend, pt.Error)
		}
		for _, txt := range texts {
			// The appliance's text joins a few clipped fields.
			if utf8.RuneCountInString(txt) > 8*maxText {
				t.Fatalf("a text of %d bytes", len(txt))
			}
		}
	})
}
