package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// What qemu's e1000 (82540EM) PHY model answers: a Marvell 88E1000-like
// PHY with the Marvell OUI in PHYID1 and the 8254x default in PHYID2
// (hw/net/e1000.c: phy_reg_init, E1000_PHY_ID2_8254xx_DEFAULT).
const (
	e1000PHYID1 = 0x0141
	e1000PHYID2 = 0x0c20
	// e1000BMSR is its BMSR: link up, extended capabilities and status,
	// preamble suppression, autoneg ability, 10/100 half and full
	// duplex. Autoneg complete (0x0020) is set by a timer after the
	// driver restarts autonegotiation, so it is not compared.
	e1000BMSR    = 0x794d
	bmsrLinkUp   = 0x0004
	bmsrANDone   = 0x0020
	e1000Backend = "ioctl:eth0"

	// Port B is sim:generic100, a DP83848-like PHY.
	simID1 = 0x2000
	simID2 = 0x5c90
)

// ipcReply is one reply line of the nose IPC.
type ipcReply struct {
	ID      *int64 `json:"id"`
	Success *bool  `json:"success"`
	Error   string `json:"error"`
	Result  *int64 `json:"result"`
}

// mdiodIPC sends lines to mdiod's nose IPC with ctl on the VM and returns
// the output lines without link events (which sim port B sends at any
// time). ctl exits 1 when a reply reports failure, so the output is
// returned with the error for the caller to judge.
func mdiodIPC(ctx context.Context, v *vm, lines ...string) ([]string, error) {
	cmd := "/user/ctl ipc mdiod"
	for _, l := range lines {
		if strings.Contains(l, "'") {
			return nil, fmt.Errorf("line %q: quotes are not passed through the remote shell", l)
		}
		cmd += " '" + l + "'"
	}
	out, err := v.ssh(ctx, cmd)
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct{ Type, Msg string }
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Type == "log" && strings.HasPrefix(ev.Msg, "PHY ") {
			continue
		}
		kept = append(kept, l)
	}
	if err != nil {
		return kept, fmt.Errorf("ctl ipc mdiod: %w: %s", err, out)
	}
	return kept, nil
}

// mdioRead reads one register with a JSON request and returns the value.
func mdioRead(ctx context.Context, v *vm, phy, reg int) (int64, error) {
	req := fmt.Sprintf(`{"command":"mdio_read","phy":%d,"address":%d,"id":%d}`, phy, reg, 100+reg)
	out, err := mdiodIPC(ctx, v, req)
	if err != nil {
		return 0, err
	}
	if len(out) != 1 {
		return 0, fmt.Errorf("%s: want one reply line, got %q", req, out)
	}
	var r ipcReply
	if err := json.Unmarshal([]byte(out[0]), &r); err != nil {
		return 0, fmt.Errorf("%s: %q: %w", req, out[0], err)
	}
	if r.ID == nil || *r.ID != int64(100+reg) || r.Success == nil || !*r.Success || r.Result == nil {
		return 0, fmt.Errorf("%s: reply %s", req, out[0])
	}
	return *r.Result, nil
}

// checkMdiod checks mdiod on the image: port A reaches qemu's e1000 PHY
// through the driver's MII ioctls, port B is a simulated PHY with a
// cycling link, and every request goes through ctl ipc over ssh.
func checkMdiod(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	mdiodLog := v.follow("/user/mdiod")
	defer func() {
		if t.Failed() {
			t.Logf("mdiod log:\n%s", v.logSnapshot("/user/mdiod"))
		}
	}()

	// The BMSR read, as nose's users send it. The port may still be
	// attaching (the interface can appear after mdiod starts), so poll.
	const bmsrReq = `{"command":"mdio_read","phy":1,"address":1,"id":1}`
	var bmsr int64
	err := waitFor(ctx, "BMSR of the e1000 PHY", time.Second, func() error {
		out, err := mdiodIPC(ctx, v, bmsrReq)
		if err != nil {
			return err
		}
		if len(out) != 1 {
			return fmt.Errorf("want one reply line, got %q", out)
		}
		var r ipcReply
		if err := json.Unmarshal([]byte(out[0]), &r); err != nil {
			return fmt.Errorf("%q: %w", out[0], err)
		}
		if r.ID == nil || *r.ID != 1 || r.Success == nil || !*r.Success || r.Result == nil {
			return fmt.Errorf("reply %s", out[0])
		}
		bmsr = *r.Result
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if bmsr&bmsrLinkUp == 0 || bmsr&^bmsrANDone != e1000BMSR {
		t.Errorf("BMSR of port A = %#04x, want %#04x (link up) with or without autoneg complete (%#04x)", bmsr, e1000BMSR, bmsrANDone)
	}
	t.Logf("mdiod: BMSR of qemu's e1000 PHY through ioctl:eth0: %#04x", bmsr)

	for _, tc := range []struct {
		what     string
		phy, reg int
		want     int64
	}{
		{"e1000 PHYID1", 1, 2, e1000PHYID1},
		{"e1000 PHYID2", 1, 3, e1000PHYID2},
		{"sim PHYID1", 2, 2, simID1},
		{"sim PHYID2", 2, 3, simID2},
	} {
		got, err := mdioRead(ctx, v, tc.phy, tc.reg)
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
		} else if got != tc.want {
			t.Errorf("%s (phy %d reg %d) = %#04x, want %#04x", tc.what, tc.phy, tc.reg, got, tc.want)
		}
	}

	// phy_status decodes the e1000 PHY's link: qemu's model advertises
	// and reports 1000BASE-T full duplex (CTRL1000, STAT1000), as the
	// guest kernel's "NIC Link is Up 1000 Mbps Full Duplex" says.
	out, err := mdiodIPC(ctx, v, `{"command":"phy_status","phy":1,"id":2}`)
	if err != nil {
		t.Errorf("phy_status: %v", err)
	} else {
		var st struct {
			ID      int64  `json:"id"`
			Success bool   `json:"success"`
			Link    bool   `json:"link"`
			Speed   int    `json:"speed"`
			Duplex  string `json:"duplex"`
			PhyID   string `json:"phy_id"`
			OUI     string `json:"oui"`
		}
		if len(out) != 1 || json.Unmarshal([]byte(out[0]), &st) != nil || st.ID != 2 || !st.Success || !st.Link ||
			st.Speed != 1000 || st.Duplex != "full" || st.PhyID != fmt.Sprintf("0x%04x%04x", e1000PHYID1, e1000PHYID2) {
			t.Errorf("phy_status of port A: %q, want success, link up at 1000 full duplex and phy_id 0x%04x%04x", out, e1000PHYID1, e1000PHYID2)
		} else {
			t.Logf("mdiod: phy_status of port A: %s", out[0])
		}
	}

	// hw_info prints nose's text shape as log events, then the reply.
	out, err = mdiodIPC(ctx, v, `{"command":"hw_info","id":3}`)
	if err != nil || len(out) < 2 || out[len(out)-1] != `{"id":3,"success":true}` {
		t.Errorf("hw_info: %q, %v", out, err)
	} else {
		var text strings.Builder
		for _, l := range out[:len(out)-1] {
			var ev struct{ Type, Msg string }
			if json.Unmarshal([]byte(l), &ev) != nil || ev.Type != "log" {
				t.Errorf("hw_info: %q is not a log event", l)
			}
			text.WriteString(ev.Msg)
		}
		for _, want := range []string{"Port A:\n", "Backend: " + e1000Backend + "\n", "Interface: eth0\n", "PHY ID: 0x01410c20\n",
			"Port B:\n", "Backend: sim:generic100\n", fmt.Sprintf("PHY ID: 0x%04x%04x\n", simID1, simID2)} {
			if !strings.Contains(text.String(), want) {
				t.Errorf("hw_info text lacks %q:\n%s", want, text.String())
			}
		}
	}

	// hw-info-get has the same as data: both ports with their backends
	// and PHY IDs.
	out, err = mdiodIPC(ctx, v, `{"command":"hw-info-get","id":3}`)
	if err != nil {
		t.Errorf("hw-info-get: %v", err)
	} else {
		var hw struct {
			ID      int64 `json:"id"`
			Success bool  `json:"success"`
			Ports   []struct {
				Port, Backend, Interface, Error string
				PhyID                           string `json:"phy_id"`
				Phy                             int    `json:"phy"`
			} `json:"ports"`
		}
		if len(out) != 1 || json.Unmarshal([]byte(out[0]), &hw) != nil || hw.ID != 3 || !hw.Success || len(hw.Ports) != 2 {
			t.Errorf("hw-info-get: %q", out)
		} else {
			a, b := hw.Ports[0], hw.Ports[1]
			if a.Port != "A" || a.Phy != 1 || a.Backend != e1000Backend || a.Interface != "eth0" || a.PhyID != "0x01410c20" || a.Error != "" {
				t.Errorf("hw_info port A: %+v", a)
			}
			if b.Port != "B" || b.Phy != 2 || b.Backend != "sim:generic100" || b.PhyID != fmt.Sprintf("0x%04x%04x", simID1, simID2) || b.Error != "" {
				t.Errorf("hw_info port B: %+v", b)
			}
		}
	}

	// The text form: as nose, the value comes as a log event in nose's
	// wording, and there is no reply line.
	out, err = mdiodIPC(ctx, v, "mdio_read 1 2")
	want := []string{fmt.Sprintf(`{"type":"log","msg":"result: value=0x%04x\n"}`, e1000PHYID1)}
	if err != nil || strings.Join(out, "\n") != strings.Join(want, "\n") {
		t.Errorf("text mdio_read 1 2: %q, %v; want %q", out, err, want)
	}

	// Out of range: as nose, an error log event, then one well-formed
	// failure reply (ctl then exits 1).
	out, err = mdiodIPC(ctx, v, `{"command":"mdio_read","phy":1,"address":32,"id":4}`)
	const wantEvent = `{"type":"log","msg":"error: mdio_read: parameter 'address' out of range: 32 not in 0..31\n"}`
	const wantErr = `{"id":4,"error":"mdio_read: parameter 'address' out of range: 32 not in 0..31","success":false}`
	if err == nil || len(out) != 2 || out[0] != wantEvent || out[1] != wantErr {
		t.Errorf("out-of-range read: %q (err %v); want %s, %s and a failure status", out, err, wantEvent, wantErr)
	}
	var r ipcReply
	if len(out) == 2 && (json.Unmarshal([]byte(out[1]), &r) != nil || r.Success == nil || *r.Success) {
		t.Errorf("out-of-range reply is not a JSON failure: %q", out[1])
	}

	// Port B's link script cycles, and each change is in the service
	// log; the watcher also reports port A's real link once.
	linkB := regexp.MustCompile(`msg="PHY B: link (up 100MBit|down)" port=B seq=\d+`)
	linkA := regexp.MustCompile(`msg="PHY A: link up 1000MBit \((master|slave)\)" port=A seq=\d+`)
	err = waitFor(ctx, "link events in mdiod's log", time.Second, func() error {
		l := mdiodLog.String()
		if !linkB.MatchString(l) {
			return fmt.Errorf("no PHY B link line in mdiod's log yet")
		}
		if !linkA.MatchString(l) {
			return fmt.Errorf("no PHY A link up line in mdiod's log")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
