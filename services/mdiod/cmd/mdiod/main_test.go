package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/cli"
	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/console"
	"github.com/tickbox-fw/tickbox/services/ctl/dgram"
	"github.com/tickbox-fw/tickbox/services/ctl/ipc"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
	"github.com/tickbox-fw/tickbox/services/mdiod/daemon"
	"github.com/tickbox-fw/tickbox/services/mdiod/mdio"
	"github.com/tickbox-fw/tickbox/services/mdiod/sim"
)

// testDaemon is a running mdiod with its sockets in a short directory.
type testDaemon struct {
	dir, ipc, kea, console, hotplug string
	rn                              running
	log                             *testutil.LockedBuffer
	done                            chan error
	cancel                          context.CancelFunc
}

var defaultPorts = []string{"-port", "A=sim:88e1512", "-port", "B=sim:generic100,link=up"}

// start runs mdiod with sim ports (defaultPorts unless args has -port)
// and waits until it serves.
func start(t *testing.T, h hooks, args ...string) *testDaemon {
	t.Helper()
	dir := testutil.ShortDir(t)
	d := &testDaemon{
		dir: dir, ipc: filepath.Join(dir, "m.socket"), kea: filepath.Join(dir, "k.sock"),
		console: filepath.Join(dir, "c.sock"), hotplug: filepath.Join(dir, "h.sock"),
		log: &testutil.LockedBuffer{}, done: make(chan error, 1),
	}
	full := []string{"--ipc-server", d.ipc, "-kea", d.kea, "-console", d.console, "-hotplug", d.hotplug, "-poll", "20ms", "-v"}
	if !strings.Contains(strings.Join(args, " "), "-port") {
		full = append(full, defaultPorts...)
	}
	full = append(full, args...)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	ready := make(chan running, 1)
	h.ready = func(rn running) { ready <- rn }
	go func() { d.done <- h.run(ctx, full, io.Discard, d.log) }()
	select {
	case d.rn = <-ready:
	case err := <-d.done:
		t.Fatalf("mdiod exited: %v\n%s", err, d.log)
	case <-time.After(10 * time.Second):
		t.Fatal("mdiod did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			t.Error("mdiod did not stop")
		}
		if t.Failed() {
			t.Logf("mdiod log:\n%s", d.log)
		}
	})
	return d
}

func (d *testDaemon) sim(t *testing.T, port int) *sim.PHY {
	t.Helper()
	p, ok := d.rn.mdio.Port(port).PHY().(*sim.PHY)
	if !ok {
		t.Fatalf("port %d is not a sim", port)
	}
	return p
}

func dial(t *testing.T, path string) *ipc.Client {
	t.Helper()
	c, err := ipc.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// marker is a request, independent of the ports, that exchange sends
// after each line: the text form has no reply line, so the marker's
// reply is what shows where a line's output ends.
const (
	marker      = `{"command":"list-commands","id":987654}`
	markerReply = `{"id":987654,"result":[`
)

// exchange sends line and returns every line it produced (events, and
// the reply of a JSON request), checking that each is one JSON object.
func exchange(t *testing.T, c *ipc.Client, line string) []string {
	t.Helper()
	if err := c.Send(line); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(marker); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		l, err := c.ReadLine()
		if err != nil {
			t.Fatalf("%q: %v (so far %q)", line, err, out)
		}
		var obj map[string]any
		if err := json.Unmarshal(l, &obj); err != nil {
			t.Fatalf("%q: reply line %q is not a JSON object: %v", line, l, err)
		}
		if strings.HasPrefix(string(l), markerReply) {
			return out
		}
		out = append(out, string(l))
	}
}

// last returns the last line of an exchange, the reply of a JSON request.
func last(lines []string) string {
	if len(lines) == 0 {
		return "(no lines)"
	}
	return lines[len(lines)-1]
}

// withoutLinkEvents drops link event lines, which may arrive at any time.
func withoutLinkEvents(lines []string) []string {
	var out []string
	for _, l := range lines {
		if msg, ok := ipc.Event([]byte(l)); ok && strings.HasPrefix(msg, "PHY ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// ev is a log event as the front end writes it: '<', '>' and '&' as
// they are (nose's writer escapes only what JSON requires).
func ev(msg string) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	e.Encode(msg)
	return `{"type":"log","msg":` + strings.TrimSuffix(b.String(), "\n") + `}`
}

func errEv(msg string) string { return ev("error: " + msg + "\n") }

// evs turns a text into its log events, one a line.
func evs(text string) []string {
	var out []string
	for _, l := range strings.SplitAfter(strings.TrimRight(text, "\n"), "\n") {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		out = append(out, ev(l))
	}
	return out
}

// TestIPCConformance runs nose's IPC against the real daemon over its
// unix socket, one row per command of nose's command table and form
// (JSON request, text form), plus mdiod's own commands, in order (later
// rows see earlier writes). The rows follow nose's handlers: a JSON
// request gets its reply, after the LOG lines of commands that log
// ("success" of a write, help, hw_info); the text form gets log events
// only ("result: value=0x%04x"); an error is an "error: ..." event, plus
// a success:false reply for JSON. nose's hardware commands (USB device,
// capture, disruptor, injector, latency tester, ...) get one error.
func TestIPCConformance(t *testing.T) {
	d := start(t, hooks{})
	c := dial(t, d.ipc)
	reg := d.rn.srv.Registry()
	help := ipc.Help(reg.Commands(), "all", false)
	mdioRead, _ := reg.Lookup("mdio_read")
	hwInfo := "Host tool version: mdiod " + reg.Version() + "\nPorts:\n" +
		"  Port A:\n    Backend: sim:88e1512\n    PHY ID: 0x01410dd1\n" +
		"  Port B:\n    Backend: sim:generic100\n    PHY ID: 0x20005c90\n"
	type row struct {
		name string
		req  string
		want []string // every line the request produces
	}
	tests := []row{
		// help
		{"help json", `{"command":"help","id":1}`, append(evs(help), `{"id":1,"success":true}`)},
		{"help text", `help`, evs(help)},
		{"help text command", `help mdio_write`, evs(ipc.Help(reg.Commands(), "mdio_write", false))},
		{"help text all", `help all`, evs(help)},
		{"text --help", `mdio_read --help`, evs(ipc.Help([]*ctl.Command{mdioRead}, "mdio_read", true))},
		// mdio_read
		{"mdio_read json", `{"command":"mdio_read","phy":1,"address":1,"id":1}`, []string{`{"id":1,"result":31049,"success":true}`}},
		{"mdio_read json no id", `{"command":"mdio_read","phy":1,"address":1}`, []string{`{"id":-1,"result":31049,"success":true}`}},
		{"mdio_read json port A", `{"command":"mdio_read","phy":"A","address":1,"id":2}`, []string{`{"id":2,"result":31049,"success":true}`}},
		{"mdio_read json port B", `{"command":"mdio_read","phy":"B","address":1,"id":2}`, []string{`{"id":2,"result":30829,"success":true}`}},
		{"mdio_read json port AB", `{"command":"mdio_read","phy":"AB","address":0,"id":3}`, []string{`{"id":3,"result_phy0":4416,"result_phy1":12544,"success":true}`}},
		{"mdio_read json phy 3", `{"command":"mdio_read","phy":3,"address":0,"id":3}`, []string{`{"id":3,"result_phy0":4416,"result_phy1":12544,"success":true}`}},
		{"mdio_read json page", `{"command":"mdio_read","phy":1,"address":1,"page":1,"id":5}`, []string{`{"id":5,"result":329,"success":true}`}},
		{"mdio_read json page restored", `{"command":"mdio_read","phy":1,"address":22,"id":6}`, []string{`{"id":6,"result":0,"success":true}`}},
		{"mdio_read json page nop", `{"command":"mdio_read","phy":1,"address":1,"page":"nop","id":7}`, []string{`{"id":7,"result":31049,"success":true}`}},
		{"mdio_read json page -1", `{"command":"mdio_read","phy":1,"address":1,"page":-1,"id":7}`, []string{`{"id":7,"result":31049,"success":true}`}},
		{"mdio_read json hex strings", `{"command":"mdio_read","phy":"0x1","address":"0x3","id":8}`, []string{`{"id":8,"result":3537,"success":true}`}},
		{"mdio_read json unknown keys", `{"command":"mdio_read","phy":1,"address":1,"bogus":1,"update":true,"id":24}`, []string{`{"id":24,"result":31049,"success":true}`}},
		{"mdio_read text", `mdio_read 1 1`, []string{ev("result: value=0x7949\n")}},
		{"mdio_read text port A", `mdio_read A 1`, []string{ev("result: value=0x7949\n")}},
		{"mdio_read text port b", `mdio_read b 1`, []string{ev("result: value=0x786d\n")}},
		{"mdio_read text both", `mdio_read AB 0`, []string{ev("result: value=0x1140/0x3100\n")}},
		{"mdio_read text page", `mdio_read A 1 1`, []string{ev("result: value=0x0149\n")}},
		{"mdio_read text page nop", `mdio_read A 1 nop`, []string{ev("result: value=0x7949\n")}},
		{"mdio_read text named", `mdio_read --phy=A --address 0x2`, []string{ev("result: value=0x0141\n")}},
		{"mdio_read text quoted", `mdio_read "A" '0x01'`, []string{ev("result: value=0x7949\n")}},
		// nose reads a JSON number for an integer parameter as a double
		// stored in an integer: the fraction is dropped (JSON form only).
		{"mdio_read json fraction", `{"command":"mdio_read","phy":1.9,"address":1.9,"id":30}`, []string{`{"id":30,"result":31049,"success":true}`}},
		{"mdio_read json page fraction", `{"command":"mdio_read","phy":1,"address":1,"page":1.7,"id":31}`, []string{`{"id":31,"result":329,"success":true}`}},
		{"mdio_read json page -1.5", `{"command":"mdio_read","phy":1,"address":1,"page":-1.5,"id":32}`, []string{`{"id":32,"result":31049,"success":true}`}},
		{"mdio_read json exponent", `{"command":"mdio_read","phy":1,"address":1e0,"id":33}`, []string{`{"id":33,"result":31049,"success":true}`}},
		{"mdio_read json fraction out of range", `{"command":"mdio_read","phy":1,"address":32.1,"id":34}`, []string{errEv("mdio_read: parameter 'address' out of range: 32 not in 0..31"), `{"id":34,"error":"mdio_read: parameter 'address' out of range: 32 not in 0..31","success":false}`}},
		{"mdio_read json fraction string", `{"command":"mdio_read","phy":1,"address":"1.9","id":35}`, []string{errEv(`mdio_read: parameter 'address' must be an integer, got "1.9"`), `{"id":35,"error":"mdio_read: parameter 'address' must be an integer, got \"1.9\"","success":false}`}},
		{"mdio_write json fraction", `{"command":"mdio_write","phy":1,"address":16,"value":4.99,"page":3.2,"id":36}`, []string{ev("success\n"), `{"id":36,"success":true}`}},
		{"mdio_write json fraction read back", `{"command":"mdio_read","phy":1,"address":16,"page":3,"id":37}`, []string{`{"id":37,"result":4,"success":true}`}},
		// mdio_write
		{"mdio_write json paged", `{"command":"mdio_write","phy":"A","address":16,"value":"0xBEEF","page":3,"id":9}`, []string{ev("success\n"), `{"id":9,"success":true}`}},
		{"mdio_write read back", `{"command":"mdio_read","phy":1,"address":16,"page":3,"id":10}`, []string{`{"id":10,"result":48879,"success":true}`}},
		{"mdio_write page 0 untouched", `{"command":"mdio_read","phy":1,"address":16,"id":11}`, []string{`{"id":11,"result":12400,"success":true}`}},
		{"mdio_write text", `mdio_write A 4 0x01e1`, []string{ev("success\n")}},
		{"mdio_write text both", `mdio_write AB 22 0 nop`, []string{ev("success\n")}},
		// hw_info
		{"hw_info json", `{"command":"hw_info","id":3}`, append(evs(hwInfo), `{"id":3,"success":true}`)},
		{"hw_info json update", `{"command":"hw_info","update":true,"id":4}`, append(evs(hwInfo), `{"id":4,"success":true}`)},
		{"hw_info text", `hw_info`, evs(hwInfo)},
		// nose's hw_info has no parameters: its text form refuses any,
		// as nose's parser does; JSON keys are ignored (above).
		{"hw_info text --update", `hw_info --update`, []string{errEv("parameter --update not found")}},
		{"hw_info text word", `hw_info update`, []string{errEv("unused arguments starting with 'update'.")}},
		// mdiod's own commands
		{"c45 read", `{"command":"mdio_read_c45","phy":"A","devad":3,"reg":2,"id":12}`, []string{`{"id":12,"result":321,"success":true}`}},
		{"c45 write", `{"command":"mdio_write_c45","phy":1,"devad":7,"reg":60,"value":2,"id":13}`, []string{ev("success\n"), `{"id":13,"success":true}`}},
		{"c45 read text", `mdio_read_c45 A 7 60`, []string{ev("result: value=0x0002\n")}},
		{"c45 absent MMD", `{"command":"mdio_read_c45","phy":1,"devad":1,"reg":0,"id":15}`, []string{errEv("PHY A (sim:88e1512): sim: MMD 1 not present: no PHY answered"), `{"id":15,"error":"PHY A (sim:88e1512): sim: MMD 1 not present: no PHY answered","success":false}`}},
		{"hw-info-get", `{"command":"hw-info-get","id":3}`, []string{`{"id":3,"ports":[{"backend":"sim:88e1512","phy":1,"phy_id":"0x01410dd1","port":"A"},{"backend":"sim:generic100","phy":2,"phy_id":"0x20005c90","port":"B"}],"success":true}`}},
		// ids as nose computes them
		{"id fraction", `{"command":"mdio_read","phy":1,"address":1,"id":4.5}`, []string{`{"id":4,"result":31049,"success":true}`}},
		{"id string", `{"command":"mdio_read","phy":1,"address":1,"id":"x"}`, []string{`{"id":-1,"result":31049,"success":true}`}},
		{"id null", `{"command":"mdio_read","phy":1,"address":1,"id":null}`, []string{`{"id":-1,"result":31049,"success":true}`}},
		{"id large", `{"id":9007199254740993,"command":"mdio_read","phy":1,"address":2}`, []string{`{"id":9007199254740993,"result":321,"success":true}`}},
		// errors
		{"address out of range", `{"command":"mdio_read","phy":1,"address":32,"id":16}`, []string{errEv("mdio_read: parameter 'address' out of range: 32 not in 0..31"), `{"id":16,"error":"mdio_read: parameter 'address' out of range: 32 not in 0..31","success":false}`}},
		{"phy none", `{"command":"mdio_read","phy":"none","address":1,"id":17}`, []string{errEv("mdio_read: parameter 'phy' out of range: 0 not in 1..3"), `{"id":17,"error":"mdio_read: parameter 'phy' out of range: 0 not in 1..3","success":false}`}},
		{"missing address", `{"command":"mdio_read","phy":1,"id":22}`, []string{errEv("mdio_read: parameter 'address' is missing"), `{"id":22,"error":"mdio_read: parameter 'address' is missing","success":false}`}},
		{"not a number", `{"command":"mdio_read","phy":"one","address":1,"id":23}`, []string{errEv(`mdio_read: parameter 'phy' must be an integer, got "one"`), `{"id":23,"error":"mdio_read: parameter 'phy' must be an integer, got \"one\"","success":false}`}},
		{"unknown command", `{"command":"foo","id":25}`, []string{errEv("command foo not found"), `{"id":25,"error":"command foo not found","success":false}`}},
		{"no command", `{"id":26}`, []string{errEv("missing command name"), `{"id":26,"error":"missing command name","success":false}`}},
		{"bad JSON", `{"command":"mdio_read",`, []string{errEv("invalid JSON: unexpected end of JSON input"), `{"id":-1,"error":"invalid JSON: unexpected end of JSON input","success":false}`}},
		// The text form checks as nose does, each word as it comes (its
		// value too), then the parameters no word gave, in nose's words.
		{"text error", `mdio_read 1 99`, []string{errEv("parameter 1/address (MDIO register address) out of range: 99 > 31.")}},
		{"text bad page before unused word", `mdio_read 1 1 # c`, []string{errEv("parameter 2/page (Register page) requires an integer, not '#'.")}},
		{"text page range", `mdio_read A 1 256`, []string{errEv("parameter 2/page (Register page) out of range: 256 > 255.")}},
		{"text bad phy", `mdio_read C 1`, []string{errEv("parameter 0/phy (Port/PHY) requires an integer, not 'C'.")}},
		{"text phy none", `mdio_read none 1`, []string{errEv("parameter 0/phy (Port/PHY) out of range: 0 < 1.")}},
		{"text fraction", `mdio_read A 1.9`, []string{errEv("parameter 1/address (MDIO register address) requires an integer, not '1.9'.")}},
		{"text missing", `mdio_write A 4`, []string{errEv("parameter 2/value (new register value) is required.")}},
		{"text bad value before missing", `mdio_write A x`, []string{errEv("parameter 1/address (MDIO register address) requires an integer, not 'x'.")}},
		{"text named twice", `mdio_read A --phy=B 1`, []string{errEv("parameter 0/phy (Port/PHY) provided more than once")}},
		{"text expects an argument", `mdio_read A --address`, []string{errEv("parameter 1/address (MDIO register address) expects an argument")}},
		{"text bad value before --help", `mdio_read x --help`, []string{errEv("parameter 0/phy (Port/PHY) requires an integer, not 'x'.")}},
		{"text unknown", `frobnicate 1`, []string{errEv("command frobnicate not found")}},
		{"text unused", `mdio_read 1 1 1 1`, []string{errEv("unused arguments starting with '1'.")}},
		{"text unknown option", `mdio_read --bogus=1`, []string{errEv("parameter --bogus not found")}},
		{"text comment", `# mdio_read 1 1`, nil},
		// An over-long line gets an error and none of it runs (nose runs
		// its first 4095 bytes or its tail, depending on how it arrives).
		{"over-long line", `{"command":"mdio_read","phy":1,"address":1,"pad":"` + strings.Repeat("x", 5000) + `","id":28}`, []string{errEv("line too long (max 4096 bytes)"), `{"id":-1,"error":"line too long (max 4096 bytes)","success":false}`}},
		{"over-long text line", strings.Repeat(" ", 4096) + `mdio_write A 4 0`, []string{errEv("line too long (max 4096 bytes)")}},
		{"over-long text line not run", `mdio_read A 4`, []string{ev("result: value=0x01e1\n")}},
		{"over-long line of 4097 bytes", `mdio_write A 4 0` + strings.Repeat(" ", 4097-len(`mdio_write A 4 0`)), []string{errEv("line too long (max 4096 bytes)")}},
		{"line of 4096 bytes runs", `mdio_read A 4` + strings.Repeat(" ", 4096-len(`mdio_read A 4`)), []string{ev("result: value=0x01e1\n")}},
		{"alive after errors", `{"command":"mdio_read","phy":1,"address":1,"id":29}`, []string{`{"id":29,"result":31049,"success":true}`}},
	}
	for i, name := range daemon.HardwareCommandNames() {
		msg := name + " needs the Ethernet Debugger hardware; mdiod drives the board's own PHYs over MDIO"
		tests = append(tests,
			row{name + " json", fmt.Sprintf(`{"command":%q,"phy":"AB","id":%d}`, name, 100+i), []string{errEv(msg), fmt.Sprintf(`{"id":%d,"error":%q,"success":false}`, 100+i, msg)}},
			row{name + " text", name + " AB --num=inf", []string{errEv(msg)}})
	}
	for _, tc := range tests {
		got := withoutLinkEvents(exchange(t, c, tc.req))
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s: %s\n got %q\nwant %q", tc.name, tc.req, got, tc.want)
		}
	}
}

// TestOutputToCaller checks that a command's output goes to the client
// that ran it only (nose logs it to every client; mdiod keeps other
// clients' scripts from reading replies to commands they did not send),
// while link events still reach every client.
func TestOutputToCaller(t *testing.T) {
	d := start(t, hooks{})
	caller, other := dial(t, d.ipc), dial(t, d.ipc)
	for _, req := range []string{
		`mdio_read A 1`,
		`mdio_write A 4 0x01e1`,
		`{"command":"mdio_write","phy":1,"address":4,"value":481,"id":2}`,
		`hw_info`,
		`{"command":"help","id":3}`,
		`mdio_read A 99`,
		`{"command":"nope","id":4}`,
	} {
		if got := withoutLinkEvents(exchange(t, caller, req)); len(got) == 0 {
			t.Errorf("%s: no output to the caller", req)
		}
		// The other client's next line is the reply to its own request.
		got := withoutLinkEvents(exchange(t, other, `{"command":"mdio_read","phy":1,"address":1,"id":9}`))
		if want := []string{`{"id":9,"result":31049,"success":true}`}; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("after %s the other client got %q, want %q", req, got, want)
		}
	}
	// A link change is every client's news.
	d.sim(t, 0).SetLink(true, 1000, false)
	for name, c := range map[string]*ipc.Client{"caller": caller, "other": other} {
		if l := linkEvent(t, c); !strings.Contains(l, "PHY A") {
			t.Errorf("%s: link event %s", name, l)
		}
	}
}

// linkEvent reads lines until a link event comes.
func linkEvent(t *testing.T, c *ipc.Client) string {
	t.Helper()
	for {
		l, err := c.ReadLine()
		if err != nil {
			t.Fatalf("waiting for a link event: %v", err)
		}
		if len(withoutLinkEvents([]string{string(l)})) == 0 {
			return string(l)
		}
	}
}

// TestStatusAndInfo checks phy_status and hw-info-get over IPC.
func TestStatusAndInfo(t *testing.T) {
	d := start(t, hooks{})
	d.sim(t, 0).SetLink(true, 1000, false)
	c := dial(t, d.ipc)
	got := withoutLinkEvents(exchange(t, c, `{"command":"phy_status","phy":1,"id":1}`))
	want := `{"id":1,"an_complete":true,"autoneg":true,"bmcr":"0x1140","bmsr":"0x796d","duplex":"full","link":true,"model":29,"oui":"00:50:43","phy_id":"0x01410dd1","rev":1,"role":"slave","speed":1000,"success":true}`
	if got[0] != want {
		t.Errorf("phy_status\n got %s\nwant %s", got[0], want)
	}
	got = withoutLinkEvents(exchange(t, c, `{"command":"phy_status","phy":3,"id":2}`))
	var both struct{ Phy0, Phy1 map[string]any }
	if err := json.Unmarshal([]byte(got[0]), &both); err != nil {
		t.Fatal(err)
	}
	if both.Phy1["speed"] != float64(100) || both.Phy1["oui"] != "08:00:17" || both.Phy0["role"] != "slave" {
		t.Errorf("phy_status 3: %s", got[0])
	}
	got = withoutLinkEvents(exchange(t, c, `{"command":"hw-info-get","id":3}`))
	want = `{"id":3,"ports":[{"backend":"sim:88e1512","phy":1,"phy_id":"0x01410dd1","port":"A"},{"backend":"sim:generic100","phy":2,"phy_id":"0x20005c90","port":"B"}],"success":true}`
	if got[0] != want {
		t.Errorf("hw-info-get\n got %s\nwant %s", got[0], want)
	}
}

// TestPortNotConfigured checks the error for a phy bit without a port.
func TestPortNotConfigured(t *testing.T) {
	d := start(t, hooks{}, "-port", "A=sim")
	c := dial(t, d.ipc)
	for _, phy := range []int{2, 3} {
		got := withoutLinkEvents(exchange(t, c, fmt.Sprintf(`{"command":"mdio_read","phy":%d,"address":1,"id":1}`, phy)))
		want := fmt.Sprintf(`{"id":1,"error":"phy %d: port B is not configured (configured: A=1)","success":false}`, phy)
		if last(got) != want {
			t.Errorf("phy %d: %s, want %s", phy, last(got), want)
		}
	}
}

// TestPipelined sends 1000 requests at once and checks that the replies
// come back in order.
func TestPipelined(t *testing.T) {
	d := start(t, hooks{})
	c := dial(t, d.ipc)
	const n = 1000
	var req bytes.Buffer
	for i := range n {
		fmt.Fprintf(&req, `{"command":"mdio_read","phy":%d,"address":%d,"id":%d}`+"\n", 1+i%2, i%4, i)
	}
	conn, err := net.Dial("unix", d.ipc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go conn.Write(req.Bytes())
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	_ = c
	want := map[int][4]int{1: {4416, 31049, 321, 3537}, 2: {12544, 30829, 8192, 23696}}
	r := newLineReader(conn)
	for i := 0; i < n; {
		l, err := r.next()
		if err != nil {
			t.Fatalf("after %d replies: %v", i, err)
		}
		if _, isEv := ipc.Event(l); isEv {
			continue
		}
		exp := fmt.Sprintf(`{"id":%d,"result":%d,"success":true}`, i, want[1+i%2][i%4])
		if string(l) != exp {
			t.Fatalf("reply %d: %s, want %s", i, l, exp)
		}
		i++
	}
}

type lineReader struct {
	c   net.Conn
	buf []byte
}

func newLineReader(c net.Conn) *lineReader { return &lineReader{c: c} }

func (r *lineReader) next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			l := append([]byte(nil), r.buf[:i]...)
			r.buf = r.buf[i+1:]
			return l, nil
		}
		b := make([]byte, 64<<10)
		n, err := r.c.Read(b)
		r.buf = append(r.buf, b[:n]...)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// triggerPHY makes a read of register 30 of port A cause a link change
// on port B and wait until the daemon has broadcast it, so that the
// event reaches the client between the request and its reply.
type triggerPHY struct {
	mdio.PHY
	trigger func()
}

func (p *triggerPHY) Read(reg uint8) (uint16, error) {
	if reg == 30 {
		p.trigger()
	}
	return p.PHY.Read(reg)
}

// TestEventsInterleaved checks that a link event arrives between a
// request and its reply, reaches every client, and that events-get has
// it over Kea.
func TestEventsInterleaved(t *testing.T) {
	var d *testDaemon
	var trig *triggerPHY
	h := hooks{wrap: func(i int, p mdio.PHY) mdio.PHY {
		if i == 0 {
			trig = &triggerPHY{PHY: p}
			return trig
		}
		return p
	}}
	d = start(t, h)
	// The link of B is up from the start; wait for that event first.
	testutil.WaitFor(t, "initial link event", 5*time.Second, func() bool { return d.rn.mdio.LastSeq() >= 1 })
	trig.trigger = func() {
		before := d.rn.mdio.LastSeq()
		d.sim(t, 1).SetLink(false, 0, false)
		d.rn.mdio.Port(1).Kick()
		deadline := time.Now().Add(5 * time.Second)
		for d.rn.mdio.LastSeq() == before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	c1, c2 := dial(t, d.ipc), dial(t, d.ipc)
	// A connection joins the broadcast list when the server starts
	// serving it, which a first answered request proves. The initial
	// event is counted (LastSeq) a moment before it is broadcast, so a
	// client that joined in that moment gets it too: these first
	// exchanges may carry it, and nothing else.
	for _, c := range []*ipc.Client{c1, c2} {
		for _, l := range exchange(t, c, `{"command":"mdio_read","phy":1,"address":2,"id":1}`) {
			if l != ev("PHY B: link up 100MBit\n") && !strings.HasPrefix(l, `{"id":1,`) {
				t.Errorf("unexpected line before the test: %s", l)
			}
		}
	}
	got := exchange(t, c1, `{"command":"mdio_read","phy":1,"address":30,"id":7}`)
	want := []string{ev("PHY B: link down\n"), `{"id":7,"result":0,"success":true}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", got, want)
	}
	// The other client got the broadcast too.
	l, err := c2.ReadLine()
	if err != nil || string(l) != ev("PHY B: link down\n") {
		t.Errorf("second client: %q, %v", l, err)
	}
	// Back up, seen by polling: both clients get it.
	d.sim(t, 1).SetLink(true, 100, false)
	for _, c := range []*ipc.Client{c1, c2} {
		l, err := c.ReadLine()
		if err != nil || string(l) != ev("PHY B: link up 100MBit\n") {
			t.Errorf("link up event: %q, %v", l, err)
		}
	}
	// Port A at 1000 master.
	trig.PHY.(*sim.PHY).SetLink(true, 1000, true)
	l, err = c1.ReadLine()
	if err != nil || string(l) != ev("PHY A: link up 1000MBit (master)\n") {
		t.Errorf("port A event: %q, %v", l, err)
	}
	resp, err := kea.Call(context.Background(), d.kea, []byte(`{"command":"events-get","arguments":{"since":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Arguments struct {
			Events []struct {
				Seq  uint64
				Port string
				Link bool
				Msg  string
				Time time.Time
			}
			LastSeq uint64 `json:"last-seq"`
		}
		Result int
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatalf("%s: %v", resp, err)
	}
	var msgs []string
	for i, e := range r.Arguments.Events {
		if e.Seq != uint64(i+2) || e.Time.IsZero() {
			t.Errorf("event %d: %+v", i, e)
		}
		msgs = append(msgs, e.Msg)
	}
	if want := "PHY B: link down|PHY B: link up 100MBit|PHY A: link up 1000MBit (master)"; strings.Join(msgs, "|") != want || r.Arguments.LastSeq != 4 {
		t.Errorf("events-get: %s", resp)
	}
}

// TestManyClients runs several clients at once, each with its own ids.
func TestManyClients(t *testing.T) {
	d := start(t, hooks{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ipc.Dial(d.ipc)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			for i := range 200 {
				id := k*1000 + i
				l, err := c.Do(fmt.Sprintf(`{"command":"mdio_read","phy":1,"address":2,"id":%d}`, id), nil)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf(`{"id":%d,"result":321,"success":true}`, id); string(l) != want {
					errs <- fmt.Errorf("client %d: %s, want %s", k, l, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSocat runs the one-liners of the README.
func TestSocat(t *testing.T) {
	testutil.NeedTool(t, "socat", "socat")
	d := start(t, hooks{})
	tests := []struct{ in, want string }{
		{`{"command":"mdio_read","phy":1,"address":1,"id":1}`, `{"id":1,"result":31049,"success":true}`},
		{`mdio_read A 2`, ev("result: value=0x0141\n")},
	}
	for _, tc := range tests {
		cmd := exec.Command("socat", "-", "UNIX-CONNECT:"+d.ipc)
		cmd.Stdin = strings.NewReader(tc.in + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("socat: %v", err)
		}
		got := strings.Join(withoutLinkEvents(strings.Split(strings.TrimSpace(string(out)), "\n")), "\n")
		if got != tc.want {
			t.Errorf("socat %s:\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// TestKeaAndConsole checks that the same commands are reachable over the
// Kea channel and the console.
func TestKeaAndConsole(t *testing.T) {
	d := start(t, hooks{})
	resp, err := kea.Call(context.Background(), d.kea, []byte(`{"command":"mdio_read","arguments":{"phy":1,"address":"0x1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp) != `{ "arguments": 31049, "result": 0 }` && !strings.Contains(string(resp), `"arguments": 31049`) {
		t.Errorf("kea mdio_read: %s", resp)
	}
	// Kea's channel stays strict where the IPC's JSON form truncates as
	// nose does: a real is no integer to Kea.
	for _, tc := range []struct{ req, want string }{
		{`{"command":"mdio_read","arguments":{"phy":1,"address":40}}`, "out of range"},
		{`{"command":"mdio_read","arguments":{"phy":1,"address":1.9}}`, `parameter 'address' must be an integer, got \"1.9\"`},
		{`{"command":"mdio_read","arguments":{"phy":1.5,"address":1}}`, `parameter 'phy' must be an integer`},
	} {
		resp, err = kea.Call(context.Background(), d.kea, []byte(tc.req))
		if err != nil || !strings.Contains(string(resp), `"result": 1`) || !strings.Contains(string(resp), tc.want) {
			t.Errorf("kea %s: %s, %v; want result 1 with %s", tc.req, resp, err, tc.want)
		}
	}
	conn, err := console.Dial(d.console)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := console.Pipe(ctx, conn, strings.NewReader("! mdio_read 1 0x2\n"), &out); err != nil {
		t.Fatal(err)
	}
	// The console prints the command's own text, nose's wording
	// (321 = 0x0141).
	if out.String() != "result: value=0x0141\n" {
		t.Errorf("console: %q", out.String())
	}
}

// hotplugPHY is a sim bound to an interface, for the hotplug datagrams.
type hotplugPHY struct {
	*sim.PHY
	mu       sync.Mutex
	detached bool
	// gone is the interface's absence: Attach fails while it is set, as
	// the ioctl backend's does for a missing interface.
	gone     bool
	attaches int
}

func (h *hotplugPHY) Interface() string { return "tbx0" }
func (h *hotplugPHY) Attach() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return fmt.Errorf("ioctl tbx0: %w", mdio.ErrDetached)
	}
	h.detached = false
	h.attaches++
	return nil
}
func (h *hotplugPHY) Detach() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.detached = true
}
func (h *hotplugPHY) Attached() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.detached
}
func (h *hotplugPHY) Read(reg uint8) (uint16, error) {
	h.mu.Lock()
	gone := h.detached
	h.mu.Unlock()
	if gone {
		return 0, fmt.Errorf("ioctl tbx0: %w", mdio.ErrDetached)
	}
	return h.PHY.Read(reg)
}

// TestHotplug sends the appliance agent's datagrams and checks that the
// port bound to the interface is detached and reattached.
func TestHotplug(t *testing.T) {
	var hp *hotplugPHY
	d := start(t, hooks{wrap: func(i int, p mdio.PHY) mdio.PHY {
		if i == 0 {
			hp = &hotplugPHY{PHY: p.(*sim.PHY)}
			return hp
		}
		return p
	}})
	c := dial(t, d.ipc)
	read := `{"command":"mdio_read","phy":1,"address":2,"id":1}`
	if got := withoutLinkEvents(exchange(t, c, read)); got[0] != `{"id":1,"result":321,"success":true}` {
		t.Fatalf("before: %s", got[0])
	}
	// The netlink watcher attaches detached ports once when it starts;
	// let that pass first, so that it cannot undo the removal below.
	testutil.WaitFor(t, "netlink watcher", 5*time.Second, func() bool {
		return strings.Contains(d.log.String(), "watching carrier over netlink")
	})
	hp.mu.Lock()
	hp.gone = true
	hp.mu.Unlock()
	if err := dgram.Send(d.hotplug, "interfaceremove=tbx0"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "detach", 5*time.Second, func() bool {
		hp.mu.Lock()
		defer hp.mu.Unlock()
		return hp.detached
	})
	got := withoutLinkEvents(exchange(t, c, read))
	if want := `{"id":1,"error":"PHY A (sim:88e1512): ioctl tbx0: interface is gone","success":false}`; last(got) != want {
		t.Errorf("detached: %s, want %s", last(got), want)
	}
	hp.mu.Lock()
	hp.gone = false
	hp.mu.Unlock()
	// Datagrams for other interfaces and garbage are logged and ignored.
	if err := dgram.Send(d.hotplug, "interfaceinsert=eth9", "bogus=1", "interfaceinsert=tbx0"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "reattach", 5*time.Second, func() bool {
		hp.mu.Lock()
		defer hp.mu.Unlock()
		return !hp.detached && hp.attaches == 1
	})
	if got := withoutLinkEvents(exchange(t, c, read)); got[0] != `{"id":1,"result":321,"success":true}` {
		t.Errorf("after reattach: %s", got[0])
	}
	if !strings.Contains(d.log.String(), "unknown command") && !strings.Contains(d.log.String(), "bogus") {
		t.Errorf("bad datagram not logged:\n%s", d.log)
	}
}

// TestIoctlLate starts mdiod with an ioctl port whose interface does not
// exist yet, as at boot: mdiod serves (rather than exiting and being
// restarted in a loop), the port reports the interface gone, and once the
// interface is created netlink attaches it, so that requests reach the
// driver (veth answers the MII ioctls with "operation not supported").
func TestIoctlLate(t *testing.T) {
	testutil.NeedRoot(t, "create a veth pair")
	testutil.NeedTool(t, "ip", "iproute2")
	var b [3]byte
	_, _ = rand.Read(b[:])
	ifname := "tbml" + hex.EncodeToString(b[:])
	d := start(t, hooks{}, "-port", "A=ioctl:"+ifname+":1", "-port", "B=sim:generic100")
	c := dial(t, d.ipc)
	got := withoutLinkEvents(exchange(t, c, `{"command":"mdio_read","phy":1,"address":1,"id":1}`))
	want := `{"id":1,"error":"PHY A (ioctl:` + ifname + `:1): ioctl:` + ifname + `: SIOCGMIIREG reg 1: interface is gone","success":false}`
	if last(got) != want {
		t.Fatalf("before the interface exists:\n got %s\nwant %s", last(got), want)
	}
	// Port B works meanwhile.
	if got := withoutLinkEvents(exchange(t, c, `{"command":"mdio_read","phy":2,"address":2,"id":2}`)); got[0] != `{"id":2,"result":8192,"success":true}` {
		t.Errorf("port B: %s", got[0])
	}
	if !strings.Contains(d.log.String(), "the port stays detached until it appears") {
		t.Errorf("the missing interface is not logged:\n%s", d.log)
	}
	if out, err := exec.Command("ip", "link", "add", ifname, "type", "veth", "peer", "name", ifname+"p").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", ifname).Run() })
	want = `{"id":3,"error":"PHY A (ioctl:` + ifname + `:1): ioctl:` + ifname + `: SIOCGMIIREG reg 1: operation not supported","success":false}`
	testutil.WaitFor(t, "port A attached", 10*time.Second, func() bool {
		return last(withoutLinkEvents(exchange(t, c, `{"command":"mdio_read","phy":1,"address":1,"id":3}`))) == want
	})
	// The port is attached before the line is logged: a request may get
	// through a moment before the log has it.
	testutil.WaitFor(t, "the attach logged", 10*time.Second, func() bool {
		return strings.Contains(d.log.String(), `msg="port attached" port=A interface=`+ifname)
	})
}

// TestIPCConnect checks --ipc-connect: mdiod dials a listening client,
// serves it, and dials again after that client hangs up.
func TestIPCConnect(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "peer.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start(t, hooks{reconnect: 20 * time.Millisecond}, "--ipc-connect", path, "-port", "A=sim")
	for round := range 2 {
		ln.(*net.UnixListener).SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, `{"command":"mdio_read","phy":1,"address":1,"id":%d}`+"\n", round)
		r := newLineReader(conn)
		for {
			l, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if _, isEv := ipc.Event(l); isEv {
				continue
			}
			if want := fmt.Sprintf(`{"id":%d,"result":31049,"success":true}`, round); string(l) != want {
				t.Errorf("round %d: %s", round, l)
			}
			break
		}
		conn.Close()
	}
}

// TestExit checks that exit, in both forms, stops the daemon with
// status 0 as nose's exit ends nose: the JSON form gets its bare reply,
// the text form nothing, then the connection ends and the sockets are
// removed.
func TestExit(t *testing.T) {
	for _, tc := range []struct{ req, reply string }{
		{`{"command":"exit","id":5}`, `{"id":5,"success":true}`},
		{`exit`, ""},
	} {
		t.Run(tc.req, func(t *testing.T) {
			d := start(t, hooks{})
			c := dial(t, d.ipc)
			if err := c.Send(tc.req); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				l, err := c.ReadLine()
				if err != nil {
					break
				}
				got = append(got, string(l))
			}
			got = withoutLinkEvents(got)
			want := []string{}
			if tc.reply != "" {
				want = append(want, tc.reply)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("exit output %q, want %q", got, want)
			}
			select {
			case err := <-d.done:
				if err != nil {
					t.Errorf("run returned %v", err)
				}
				d.done <- nil
			case <-time.After(10 * time.Second):
				t.Fatal("mdiod did not exit")
			}
			if _, err := os.Stat(d.ipc); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("IPC socket left behind: %v", err)
			}
		})
	}
}

// TestCommandLine checks usage errors (status 2), runtime failures
// (status 1) and --help (status 0).
func TestCommandLine(t *testing.T) {
	dir := testutil.ShortDir(t)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	base := []string{"-kea", "", "-console", "", "-hotplug", ""}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "-port A=BACKEND"},
		{[]string{"-h"}, 0, "sim[:MODEL[,OPTIONS]]"},
		{nil, 2, "no -port given"},
		{[]string{"-port", "C=sim"}, 2, `want A=BACKEND or B=BACKEND`},
		{[]string{"-port", "A=sim", "-port", "a=sim"}, 2, "-port A given twice"},
		{[]string{"-port", "A=floppy:x"}, 2, `unknown backend "floppy"`},
		{[]string{"-port", "A=sim:nosuch"}, 2, `unknown model "nosuch"`},
		{[]string{"-port", "A=sim:88e1512,script=up@x"}, 2, "offset"},
		{[]string{"-port", "A=sim", "-poll", "1ms"}, 2, "-poll 1ms: at least 10ms"},
		{[]string{"-port", "A=sim", "-bogus"}, 2, "flag provided but not defined"},
		{[]string{"-port", "A=sim", "-log-level", "loud"}, 2, `invalid value "loud" for flag -log-level`},
		{[]string{"-h"}, 0, "-log-level LEVEL"},
		{[]string{"-port", "A=sim", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-port", "A=ioctl:"}, 2, "ioctl"},
		{[]string{"-port", "A=gpio:mdc=1"}, 2, "mdio"},
		{[]string{"-port", "A=sim", "--ipc-server", file}, 1, "not a socket"},
		{[]string{"-port", "A=sim", "--ipc-server", dir}, 1, "is a directory"},
	}
	for _, tc := range tests {
		var out testutil.LockedBuffer
		err := hooks{}.run(context.Background(), append(append([]string{}, base...), tc.args...), io.Discard, &out)
		code := 0
		if err != nil {
			code = cli.Code(err, 1)
		}
		text := out.String()
		if err != nil {
			text += err.Error()
		}
		if code != tc.code || !strings.Contains(text, tc.want) {
			t.Errorf("%q: status %d (%v), want %d with %q\n%s", tc.args, code, err, tc.code, tc.want, out.String())
		}
	}
}

// TestExitStatus runs mdiod as its main does: the exit status and the
// one line it prints for a bad command line or a socket it cannot open.
func TestExitStatus(t *testing.T) {
	dir := testutil.ShortDir(t)
	base := []string{"-kea", "", "-console", "", "-hotplug", "", "--ipc-server", ""}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "usage: mdiod [flags] -port A=BACKEND"},
		{nil, 2, "mdiod: no -port given"},
		{[]string{"-port", "A=sim", "-bogus"}, 2, "mdiod: flag provided but not defined: -bogus\n"},
		{[]string{"-port", "A=floppy:x"}, 2, `mdiod: port A: unknown backend "floppy"`},
		{[]string{"-port", "A=sim", "-kea", dir}, 1, "mdiod: "},
	} {
		var out testutil.LockedBuffer
		code := cli.Exec(context.Background(), "mdiod", hooks{}.run, append(append([]string{}, base...), tc.args...), &out, &out)
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, out.String())
		}
	}
}
