package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// imagePtpdConf is /etc/ptpd.conf as the image ships it.
func imagePtpdConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../../gokrazy-instance/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		PackageConfig map[string]struct{ ExtraFileContents map[string]string }
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	conf := cfg.PackageConfig["github.com/tickbox-fw/tickbox/services/ptpd/cmd/ptpd"].ExtraFileContents["/etc/ptpd.conf"]
	if conf == "" {
		t.Fatal("config.json ships no /etc/ptpd.conf for ptpd")
	}
	return conf
}

// TestImageConfigSecondPort runs the image's ptpd.conf in a network
// namespace that has an eth0 but no eth1, as a box with one port: ptp2
// waits for its interface without disturbing the rest, starts on
// interfaceinsert=eth1 once eth1 exists and stops on interfaceremove.
func TestImageConfigSecondPort(t *testing.T) {
	t.Parallel()
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, "network namespaces: "+why)
	}
	ns, err := ptptest.NewNS("tbimg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if err := ns.Run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "tbimg0"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Run("ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	// The image's file with the test's own paths and control socket.
	conf := imagePtpdConf(t)
	conf = strings.ReplaceAll(conf, "/run/ptpd/", "DIR/")
	conf = regexp.MustCompile(`(?m)^state_path .*$`).ReplaceAllString(conf, "state_path DIR/state")
	conf = strings.Replace(conf, "[general]\n", "[general]\ncontrol_path CONTROL\n", 1)
	d := startPtpdIn(t, []string{"ip", "netns", "exec", ns.Name}, conf)
	d.waitLog(t, "ptp2: interface eth1 not present, instance waits for it (hotplug_detection_mode manual)")

	states := func() map[string]string {
		m := testutil.KeaCommand(t, d.kea, "instances-get", nil)
		args, _ := m["arguments"].(map[string]any)
		list, _ := args["instances"].([]any)
		out := map[string]string{}
		for _, e := range list {
			in, _ := e.(map[string]any)
			name, _ := in["name"].(string)
			st, _ := in["state"].(string)
			if sel, _ := in["selected"].(bool); sel {
				st += ",selected"
			}
			out[name] = st
		}
		return out
	}
	for _, step := range []struct {
		name string
		do   func() error
		want map[string]string
	}{
		{name: "no eth1", want: map[string]string{"freerun1": "freerun,selected", "ptp1": "listening", "ptp2": "disabled"}},
		{name: "eth1 appears", do: func() error {
			if err := ns.Run("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "tbimg1"); err != nil {
				return err
			}
			if err := ns.Run("ip", "link", "set", "eth1", "up"); err != nil {
				return err
			}
			_, code := sfptpdctl(t, "-s", d.ctl, "interfaceinsert=eth1")
			if code != 0 {
				t.Errorf("sfptpdctl interfaceinsert=eth1: exit %d", code)
			}
			return nil
		}, want: map[string]string{"freerun1": "freerun,selected", "ptp1": "listening", "ptp2": "listening"}},
		{name: "eth1 goes", do: func() error {
			if err := ns.Run("ip", "link", "del", "eth1"); err != nil {
				return err
			}
			_, code := sfptpdctl(t, "-s", d.ctl, "interfaceremove=eth1")
			if code != 0 {
				t.Errorf("sfptpdctl interfaceremove=eth1: exit %d", code)
			}
			return nil
		}, want: map[string]string{"freerun1": "freerun,selected", "ptp1": "listening", "ptp2": "disabled"}},
	} {
		if step.do != nil {
			if err := step.do(); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		var got map[string]string
		ok := false
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			got = states()
			if ok = len(got) == len(step.want); ok {
				for k, v := range step.want {
					ok = ok && got[k] == v
				}
			}
			if ok {
				break
			}
		}
		if !ok {
			t.Fatalf("%s: instances %v, want %v\n%s", step.name, got, step.want, d.out)
		}
	}
	for _, w := range warnings(d.out.String()) {
		if !strings.Contains(w, "interface eth1 not present") && !strings.Contains(w, "no-announce-pkts") &&
			!strings.Contains(w, "failed to receive Announce") {
			t.Errorf("unexpected warning: %s", w)
		}
	}
}
