package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The goldens under testdata/dumptables are written from sfptpd's
// printing code, not from this package's output:
//   - the interface table follows sfptpd_db_table_dump as called by
//     sfptpd_interface_diagnostics(0): a "dump of table" line, titles
//     right-aligned in "| %*s " cells, a rule of '-' runs joined by '+',
//     and each value right-aligned by the field's "%*s"/"%*d" print
//     function, columns as wide as their widest title or value, rows in
//     if_index order;
//   - the clock list follows clock_dump_header and clock_dump_record as
//     called by sfptpd_clock_diagnostics(0): the "requested clocks
//     list:-" title, the fixed heading and separator, NIC rows
//     "  | %-7s | %6d | %6d | %-18s | %-10s | %s%s%s" newest first, and
//     the system row "  | %-7s | %-36s | %-10s | %s%s";
//   - the clock feed lines follow clockfeed_dump_state at severity 0
//     with its "clocks: " prefix.

func TestRenderDumpTablesGolden(t *testing.T) {
	tests := []struct {
		name   string
		in     dumpInput
		golden string
	}{
		{name: "only the system clock, no interfaces", in: dumpInput{clocks: []string{"system"}}, golden: "system-only.golden"},
		{
			name: "two ports sharing a PHC, a port without one, a macvlan",
			in: dumpInput{
				interfaces: []Interface{
					{Index: 7, Name: "mv0", MAC: "02:11:22:33:44:55", Type: "macvlan", Class: "non-sfc"},
					{Index: 4, Name: "eth2", MAC: "00:0f:53:aa:bb:01", Type: "phys", BusAddr: "0000:03:00.1", Class: "sfc"},
					{Index: 2, Name: "eth0", MAC: "52:54:00:12:34:56", Type: "phys", BusAddr: "0000:00:03.0", Class: "non-sfc"},
					{Index: 3, Name: "eth1", MAC: "00:0f:53:aa:bb:00", Type: "phys", BusAddr: "0000:03:00.0", Class: "sfc"},
				},
				clocks: []string{"system", "phc1(eth1/eth2)", "virtual"},
			},
			golden: "shared-phc.golden",
		},
		{
			name: "NIC ids in interface order, a PHC of an unlisted interface, clock_readonly",
			in: dumpInput{
				interfaces: []Interface{
					{Index: 3, Name: "eth1", MAC: "00:11:22:33:44:66", Type: "phys", Class: "non-sfc"},
					{Index: 2, Name: "eth0", MAC: "00:11:22:33:44:55", Type: "phys", BusAddr: "0000:01:00.0", Class: "non-sfc"},
				},
				clocks:   []string{"system", "phc0(eth1)", "phc3(eth0)", "phc7(ens9)"},
				readonly: []string{"eth1", "system"},
			},
			golden: "readonly-order.golden",
		},
		{name: "clock_control no-adjust", in: dumpInput{clocks: []string{"system", "virtual"}, noAdjust: true}, golden: "no-adjust.golden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := readGolden(t, tc.golden)
			got := strings.Join(renderDumpTables(tc.in), "\n") + "\n"
			if got != want {
				t.Errorf("dump differs from %s\ngot:\n%s\nwant:\n%s", tc.golden, got, want)
			}
		})
	}
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dumptables", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParsePHC(t *testing.T) {
	tests := []struct {
		long  string
		phc   int
		intfs string
		ok    bool
	}{
		{"phc0(eth0)", 0, "eth0", true},
		{"phc12(eth1/eth2)", 12, "eth1,eth2", true},
		{"phc3()", 3, "", true},
		{"system", 0, "", false},
		{"virtual", 0, "", false},
		{"phc0", 0, "", false},
		{"phcx(eth0)", 0, "", false},
		{"phc99999999999999999999(eth0)", 0, "", false},
	}
	for _, tc := range tests {
		phc, intfs, ok := parsePHC(tc.long)
		if ok != tc.ok || phc != tc.phc || strings.Join(intfs, ",") != tc.intfs {
			t.Errorf("parsePHC(%q) = %d %q %v, want %d %q %v", tc.long, phc, intfs, ok, tc.phc, tc.intfs, tc.ok)
		}
	}
}

func TestBusAddrNIC(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0000:03:00.1", "0000:03:00"},
		{"0000:03:00.0", "0000:03:00"},
		{"", ""},
		{"virtio0", "virtio0"},
		{"00:01.2", "00:01.2"}, // shorter than sfptpd's 8 hex/colon characters
	}
	for _, tc := range tests {
		if got := busAddrNIC(tc.in); got != tc.want {
			t.Errorf("busAddrNIC(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDumpTablesEngine runs the command on a running engine: the text
// returned and the message log carry the same lines, each its own
// info record, in order; a failing lister is logged and leaves the
// interface table empty.
func TestDumpTablesEngine(t *testing.T) {
	listed := []Interface{
		{Index: 9, Name: "eth5", MAC: "00:0f:53:00:00:15", Type: "phys", BusAddr: "0000:05:00.0", Class: "sfc"},
		{Index: 2, Name: "eth0", MAC: "00:0f:53:00:00:10", Type: "phys", BusAddr: "0000:03:00.0", Class: "sfc"},
		{Index: 3, Name: "eth1", MAC: "00:0f:53:00:00:11", Type: "phys", BusAddr: "0000:04:00.0", Class: "sfc"},
	}
	tests := []struct {
		name    string
		list    InterfaceLister
		golden  string
		wantErr bool
	}{
		{name: "listed interfaces", list: func() ([]Interface, error) { return listed, nil }, golden: "engine.golden"},
		{name: "lister fails", list: func() ([]Interface, error) { return nil, errors.New("netlink refused") }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newCtlHarness(t, fmt.Sprintf(ctlConfig, ""), CommandOptions{})
			var b strings.Builder
			h.e.dumpTables(&b, tc.list)
			got := b.String()
			if tc.golden != "" {
				if want := readGolden(t, tc.golden); got != want {
					t.Errorf("dump differs from %s\ngot:\n%s\nwant:\n%s", tc.golden, got, want)
				}
			}
			logs := h.logs.String()
			at := 0
			for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
				rec := infoRecord(l)
				i := strings.Index(logs[at:], rec+"\n")
				if i < 0 {
					t.Fatalf("log lacks, in order, the info record %s\n%s", rec, logs)
				}
				at += i + len(rec)
			}
			hasErr := strings.Contains(logs, errLine("dumptables: listing interfaces failed")+` err="netlink refused"`)
			if hasErr != tc.wantErr {
				t.Errorf("lister error logged %v, want %v\n%s", hasErr, tc.wantErr, logs)
			}
			if tc.wantErr && !strings.Contains(got, "|----------+------+-----+-------+-----+---------+-----+------+--------------|\nrequested clocks list:-\n") {
				t.Errorf("interface table not empty after a lister failure:\n%s", got)
			}
		})
	}
}

// infoRecord is how the test's text handler writes an info message: it
// quotes a message only when it holds a space, '=' or '"'.
func infoRecord(m string) string {
	if m == "" || strings.ContainsAny(m, " =\"") {
		return info(m)
	}
	return "level=INFO msg=" + m
}
