package metrics

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// FuzzConvert feeds arbitrary replies to every conversion: none may
// panic, every series it sends must be a valid metric of a described
// family, and a reply sends at most maxPerFamily series per family.
func FuzzConvert(f *testing.F) {
	for _, s := range []string{
		`{"instances":[{"name":"ptp1","state":"slave","selected":true,"offset-ns":-1500,"freq-adj-ppb":12.5,"path-delay-ns":250000}]}`,
		`{"mctp":{"packets-in":10,"drops":{"sequence":2},"bindings":{"i2c0":{"rx_packets":10}},"forwarded":[{"in":"a","out":"b","packets":1}]},"demux":{"in":1,"clients":{"1":2}}}`,
		`{"events":3,"ports":[{"port":"A","link":true,"speed":1000,"changes":3}]}`,
		`{"uptime":4,"requests":{"kea":{"success":1,"error":0}},"connections":{"kea":0},"connections-accepted":{"kea":2}}`,
		`{"instances":[{"name":"\xff","offset-ns":1e308,"freq-adj-ppb":-1e308}]}`,
		`{"ports":[{"port":"A","speed":-5,"changes":18446744073709551615}]}`,
		`[]`, `null`, `{"instances":null}`, `{"mctp":{"drops":{"x":-1}}}`, `{"requests":{"kea":[1]}}`,
	} {
		f.Add([]byte(s))
	}
	d := newDescs()
	described := map[string]bool{}
	for _, x := range d.all() {
		described[x.String()] = true
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		ch := make(chan prometheus.Metric, 16)
		done := make(chan map[*prometheus.Desc]int)
		go func() {
			n := map[*prometheus.Desc]int{}
			for m := range ch {
				if !described[m.Desc().String()] {
					t.Errorf("undescribed family %s", m.Desc())
				}
				var pb dto.Metric
				if err := m.Write(&pb); err != nil {
					t.Errorf("invalid metric %s: %v", m.Desc(), err)
				}
				n[m.Desc()]++
			}
			done <- n
		}()
		e := newEmitter(ch, log, d)
		for _, conv := range []func(*emitter, string, json.RawMessage) error{convertPTPD, convertMCTPD, convertMDIOD} {
			e.reset("svc")
			conv(e, "svc", data)
		}
		var st map[string]any
		if json.Unmarshal(data, &st) == nil {
			e.reset("svc")
			convertStatus(e, "svc", st)
		}
		close(ch)
		for desc, n := range <-done {
			// Four conversions, each capped per family.
			if n > 4*maxPerFamily {
				t.Errorf("%d series of %s", n, desc)
			}
		}
	})
}
