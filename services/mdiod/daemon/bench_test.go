package daemon

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// BenchmarkInvokeRead is the per-request cost of mdio_read below the IPC
// framing: parameter binding, the handler and the simulated PHY.
func BenchmarkInvokeRead(b *testing.B) {
	_, reg := newRegistry(b, [2]mdio.PHY{newSim(b, ""), nil}, Options{})
	in := ctl.Input{Named: map[string]any{"phy": json.Number("1"), "address": json.Number("1")}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := reg.Invoke(ctx, "mdio_read", in, nil); r.Code != ctl.Success {
			b.Fatal(r.Text)
		}
	}
}
