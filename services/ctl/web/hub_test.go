package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testdaemon"
	"github.com/tickbox-fw/tickbox/internal/testutil"
)

// TestHub puts the page in front of a real hub and real daemons: ptpd
// (a free-running instance on a virtual clock), mctpd (the null
// binding) and mdiod (simulated PHYs), with the appliance configured but
// not running. Every section is filled from the daemons' own replies;
// a daemon that stops is shown down with its error and comes back.
func TestHub(t *testing.T) {
	t.Parallel()
	bins := testdaemon.Build(t, "ptpd", "mctpd", "mdiod")
	dir := testutil.ShortDir(t)

	ptpSock := filepath.Join(dir, "ptpd.sock")
	writeFile(t, filepath.Join(dir, "ptpd.cfg"), "[general]\nsync_module freerun fr1\ncontrol_path "+filepath.Join(dir, "ptpd.ctl")+
		"\nstate_path "+filepath.Join(dir, "state")+"\n")
	ptpd := testdaemon.Start(t, "ptpd", bins["ptpd"], "-f", filepath.Join(dir, "ptpd.cfg"), "-kea", ptpSock, "-virtual-clock", "500us,30")
	testdaemon.WaitKea(t, ptpd, ptpSock)
	_, mctpSock := startMctpd(t, bins["mctpd"], dir)
	mdioSock := filepath.Join(dir, "mdiod.sock")
	mdiod := startMdiod(t, bins["mdiod"], mdioSock)
	applianceSock := filepath.Join(dir, "appliance.sock") // nothing listens

	h := newHub(t, [][2]string{{"ptpd", ptpSock}, {"mctpd", mctpSock}, {"mdiod", mdioSock}, {"appliance", applianceSock}})
	p := New(h, Options{Logger: quiet(), Interval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	srv := httptest.NewServer(p.Handler())
	// The poller's end ends the event streams, which the server's Close
	// waits for.
	t.Cleanup(func() { cancel(); <-done; srv.CloseClientConnections(); srv.Close() })

	get := func() Snapshot {
		resp, err := http.Get(srv.URL + "/api/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s Snapshot
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	up := func(s Snapshot) map[string]bool {
		m := map[string]bool{}
		for _, st := range s.Services {
			m[st.Service] = st.Up
		}
		return m
	}
	var s Snapshot
	testutil.WaitFor(t, "ptpd's fr1 selected, mdiod's ports read", 30*time.Second, func() bool {
		s = get()
		return s.PTP != nil && s.PTP.Selected == "fr1" && s.MDIO != nil && len(s.MDIO.Ports) == 2 && s.MDIO.Ports[1].Link != nil
	})

	if got := up(s); !got["ptpd"] || !got["mctpd"] || !got["mdiod"] || got["appliance"] {
		t.Errorf("services up %v", got)
	}
	for _, st := range s.Services {
		switch {
		case st.Service == "appliance":
			if !strings.Contains(st.Error, "no such file or directory") {
				t.Errorf("appliance error %q", st.Error)
			}
		case st.Version == "" || st.PID == 0:
			t.Errorf("service %+v", st)
		}
	}
	if s.Appliance == nil || len(s.Appliance.Errors) != 1 || !strings.Contains(s.Appliance.Errors[0], "events-get: ") || !strings.Contains(s.Appliance.Errors[0], "no such file or directory") {
		t.Errorf("appliance section %+v", s.Appliance)
	}
	if len(s.PTP.Errors)+len(s.MCTP.Errors)+len(s.MDIO.Errors) > 0 {
		t.Errorf("errors: ptp %q mctp %q mdio %q", s.PTP.Errors, s.MCTP.Errors, s.MDIO.Errors)
	}
	if e := s.MCTP.Endpoint; e == nil || e.EID != 8 || len(e.Bindings) != 1 || e.Bindings[0].Name != "null" || e.UUID == "" {
		t.Errorf("mctpd endpoint %+v", e)
	}
	if len(s.MCTP.Routes) == 0 || !s.MCTP.Routes[len(s.MCTP.Routes)-1].Default {
		t.Errorf("mctpd routes %+v", s.MCTP.Routes)
	}
	if st := s.MCTP.Stats; st == nil || counterString(st.Messages) == "" || !strings.Contains(counterString(st.Messages), "messages-in=0") {
		t.Errorf("mctpd stats %+v", st)
	}
	a, b := s.MDIO.Ports[0], s.MDIO.Ports[1]
	if a.Name != "A" || a.Backend != "sim:88e1512" || a.Link == nil || *a.Link || b.Name != "B" || !*b.Link || b.Speed != 100 || b.PHYID != "0x20005c90" ||
		b.Changes == nil || *b.Changes != 1 || a.Changes == nil || *a.Changes != 0 {
		t.Errorf("ports %+v %+v", a, b)
	}
	if len(s.History.T) == 0 {
		t.Error("no history")
	}

	// The page renders from the real snapshot.
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"selected":"fr1"`) {
		t.Errorf("page: %d, %d bytes", resp.StatusCode, len(body))
	}

	// mdiod stops: it is down, with its error, within 5 s; the others
	// carry on.
	mdiod.Stop(t)
	start := time.Now()
	testutil.WaitFor(t, "mdiod down", 5*time.Second, func() bool { s = get(); return !up(s)["mdiod"] })
	t.Logf("mdiod shown down %v after it stopped", time.Since(start).Round(time.Millisecond))
	if len(s.MDIO.Errors) == 0 || len(s.MDIO.Ports) != 0 || !up(s)["ptpd"] || s.PTP.Selected != "fr1" {
		t.Errorf("after mdiod stopped: mdio %+v ptp %+v", s.MDIO, s.PTP)
	}
	// It comes back.
	startMdiod(t, bins["mdiod"], mdioSock)
	testutil.WaitFor(t, "mdiod back", 30*time.Second, func() bool {
		s = get()
		return up(s)["mdiod"] && len(s.MDIO.Errors) == 0 && len(s.MDIO.Ports) == 2
	})
}
