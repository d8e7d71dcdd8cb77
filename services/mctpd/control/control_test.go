package control

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
	"github.com/tickbox-fw/tickbox/services/mctpd/demux"
	"github.com/tickbox-fw/tickbox/services/mctpd/mctp"
)

// fakeDemux reports fixed client counts by message type.
type fakeDemux map[byte]int

func (f fakeDemux) Stats() demux.Stats { return demux.Stats{Clients: f} }

func newRegistry(t *testing.T, tagged Demux) (*ctl.Registry, *mctp.Router) {
	t.Helper()
	r, err := mctp.New(mctp.Options{EID: 8, Bindings: []binding.Binding{&mctp.Null{}}, UUID: [16]byte{1, 2}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	reg := ctl.NewRegistry(ctl.Options{Name: "mctpd", Logger: slog.New(slog.DiscardHandler)})
	reg.MustRegister(Commands(Options{Router: r, Demux: fakeDemux{1: 2, 5: 0, 0x7e: 1}, Tagged: tagged})...)
	return reg, r
}

// reply runs a command and returns its code, text and arguments as JSON.
func reply(reg *ctl.Registry, name string, named map[string]any) (ctl.Code, string, string) {
	res := reg.Invoke(context.Background(), name, ctl.Input{Named: named}, nil)
	b, _ := json.Marshal(res.Args)
	return res.Code, res.Text, string(b)
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name    string
		tagged  Demux
		cmd     string
		args    map[string]any
		code    ctl.Code
		text    string
		want    []string // substrings of the arguments' JSON
		notWant []string
	}{
		{"types from the plain demux", nil, "endpoints-get", nil, ctl.Success, "",
			[]string{`"types":[1,126]`, `"eid":8`, `"bridge":false`, `"uuid":"01020000-`}, nil},
		{"types from both demuxes", fakeDemux{1: 1, 3: 1}, "endpoints-get", nil, ctl.Success, "",
			[]string{`"types":[1,3,126]`}, nil},
		{"routes: the default route last", nil, "routes-get", nil, ctl.Success, "",
			[]string{`"local":8`, `"default":true`, `"binding":"null"`}, nil},
		{"stats without the tagged demux", nil, "stats-get", nil, ctl.Success, "",
			[]string{`"demux":{`, `"mctp":{`}, []string{"demux-tagged"}},
		{"stats with the tagged demux", fakeDemux{}, "stats-get", nil, ctl.Success, "",
			[]string{`"demux-tagged":{`}, nil},
		{"eid-set", nil, "eid-set", map[string]any{"eid": 20}, ctl.Success, "local EID 20", []string{`{"eid":20}`}, nil},
		{"eid-set below the range", nil, "eid-set", map[string]any{"eid": 7}, ctl.Error, "eid", nil, nil},
		{"eid-set above the range", nil, "eid-set", map[string]any{"eid": 255}, ctl.Error, "eid", nil, nil},
		{"eid-set without eid", nil, "eid-set", nil, ctl.Error, "eid", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, r := newRegistry(t, tc.tagged)
			code, text, args := reply(reg, tc.cmd, tc.args)
			if code != tc.code || !strings.Contains(text, tc.text) {
				t.Fatalf("%s: code %v text %q, want %v with %q", tc.cmd, code, text, tc.code, tc.text)
			}
			for _, w := range tc.want {
				if !strings.Contains(args, w) {
					t.Errorf("%s: %s lacks %s", tc.cmd, args, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(args, w) {
					t.Errorf("%s: %s has %s", tc.cmd, args, w)
				}
			}
			if tc.cmd == "eid-set" && tc.code == ctl.Success {
				if got := r.EID(); got != 20 {
					t.Errorf("router EID %d after eid-set 20", got)
				}
			}
			if tc.cmd == "eid-set" && tc.code != ctl.Success && r.EID() != 8 {
				t.Errorf("refused eid-set changed the EID to %d", r.EID())
			}
		})
	}
}
