package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
)

// FuzzCommandLine runs a request line through mdiod's registry the way
// the IPC front end does: a line starting with '{' as a JSON object
// (command plus named parameters, reals truncated as nose does), anything
// else as nose's text form (ipc.ParseLine, then ipc.BindWords, whose
// errors must have a text too). Every outcome must be a success or an error with a text; a read returns
// 16-bit values; and no command other than a write leaves the page
// register changed, so paged accesses always restore page 0.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		`{"command":"mdio_read","phy":1,"address":1,"id":1}`,
		`{"command":"mdio_read","phy":3,"address":"0x16","page":"0xff"}`,
		`{"command":"mdio_write","phy":1,"address":0,"value":32768}`,
		`{"command":"mdio_read_c45","phy":2,"devad":7,"reg":61}`,
		`{"command":"phy_status","phy":3}`,
		`{"command":"help","search":"mdio"}`,
		`{"command":"events-get","since":1,"limit":2}`,
		`mdio_read 1 1`, `mdio_read "0x1" '0x01' 3`, `mdio_read --phy=3 --address=31 --page=255`,
		`mdio_write 2 4 0x0041`, `mdio_write_c45 1 3 20 7`, `hw_info`, `help c45`, `interfaceremove eth0`,
		`mdio_read 1 99`, `mdio_read 1 1 256`, `mdio_read "1`, `# comment`, `{"command":1}`, `{`,
		`{"command":"mdio_read","phy":"AB","address":1,"page":"nop","id":4.5}`, `{"command":"hw_info","update":true}`,
		`mdio_read --phy=ab --address=1 --page=NOP`, `inject AB 00`, `{"command":"disrupt","phy":"-"}`,
		`mdio_read 1 1 # c`, `{"command":"mdio_read","phy":1.9,"address":31.99,"page":-1.5}`, `hw_info --update`,
		`mdio_write A 4`, `{"command":"mdio_write","phy":1,"address":4,"value":1e300}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		a, b := newSim(t, "88e1512,link=up"), newSim(t, "generic100,link=up")
		_, reg := newRegistry(t, [2]mdio.PHY{a, b}, Options{})
		name, in, ok, err := parseLine(reg, line)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%q: error without text", line)
			}
			return
		}
		if !ok {
			return
		}
		res := reg.Invoke(context.Background(), name, in, nil)
		switch res.Code {
		case ctl.Success:
			if name == "mdio_read" || name == "mdio_read_c45" {
				checkValues(t, res.Args)
			}
			if _, err := json.Marshal(res.Args); err != nil {
				t.Fatalf("%q: result does not encode: %v", line, err)
			}
		case ctl.Error, ctl.Unsupported:
			if res.Text == "" {
				t.Fatalf("%q: error without text", line)
			}
			return
		default:
			t.Fatalf("%q: result code %d", line, res.Code)
		}
		if name == "mdio_write" {
			return
		}
		if pa, _ := a.Read(mdio.PageSel); pa != 0 {
			t.Fatalf("%q left port A on page %d", line, pa)
		}
	})
}

func checkValues(t *testing.T, args any) {
	t.Helper()
	switch v := args.(type) {
	case int64:
		if v < 0 || v > 0xffff {
			t.Fatalf("read value %d", v)
		}
	case map[string]any:
		for k, x := range v {
			n, ok := x.(int64)
			if (k != "result_phy0" && k != "result_phy1") || !ok || n < 0 || n > 0xffff {
				t.Fatalf("read result %v", v)
			}
		}
	default:
		t.Fatalf("read result of type %T", args)
	}
}

// parseLine splits a request line into a command and its input as the
// IPC front end does; ok is false for a line that runs nothing (bad JSON,
// a comment, an unknown command, "--help"), err a text-form error.
func parseLine(reg *ctl.Registry, line string) (string, ctl.Input, bool, error) {
	trimmed := bytes.TrimSpace([]byte(line))
	if len(trimmed) > 0 && trimmed[0] == '{' {
		d := json.NewDecoder(bytes.NewReader(trimmed))
		d.UseNumber()
		var obj map[string]any
		if d.Decode(&obj) != nil {
			return "", ctl.Input{}, false, nil
		}
		name, ok := obj["command"].(string)
		if !ok {
			return "", ctl.Input{}, false, nil
		}
		delete(obj, "command")
		delete(obj, "id")
		return name, ctl.Input{Named: obj, TruncateReals: true}, true, nil
	}
	name, args, comment, err := ipc.ParseLine(line)
	if err != nil || comment {
		return "", ctl.Input{}, false, err
	}
	cmd, ok := reg.Lookup(name)
	if !ok {
		return "", ctl.Input{}, false, nil
	}
	in, help, err := ipc.BindWords(cmd, args)
	if err != nil || help {
		return "", ctl.Input{}, false, err
	}
	return name, in, true, nil
}
