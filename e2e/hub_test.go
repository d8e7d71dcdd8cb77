package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// checkHub checks the image's control hub from the host: the status
// page through the forwarded status port (basic auth with the web UI's
// password), /metrics without it, the Kea channel over HTTP, and
// `ctl -s SERVICE COMMAND` over ssh.
func checkHub(t *testing.T, ctx context.Context, v *vm) {
	t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", v.statusPort)
	get := func(path, password string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if err != nil {
			return 0, "", err
		}
		if password != "" {
			req.SetBasicAuth("gokrazy", password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b), err
	}

	// The hub starts with the other services; give the page a moment.
	var page string
	err := waitFor(ctx, "status page", 2*time.Second, func() error {
		code, body, err := get("/", v.password)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET / with the password: %d %.200s", code, body)
		}
		page = body
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, "<html") || !strings.Contains(page, "uPlot") {
		t.Errorf("GET / is not the status page:\n%.500s", page)
	}
	if code, _, err := get("/", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET / without the password: %d %v, want 401", code, err)
	}
	if code, _, err := get("/", "wrong"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET / with a wrong password: %d %v, want 401", code, err)
	}

	// /metrics is open by default, and every fronted daemon is up.
	err = waitFor(ctx, "metrics with every daemon up", 2*time.Second, func() error {
		code, body, err := get("/metrics", "")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /metrics: %d %.200s", code, body)
		}
		for _, svc := range []string{"ptpd", "mctpd", "mdiod", "appliance"} {
			if want := `tickbox_service_up{service="` + svc + `"} 1`; !strings.Contains(body, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		if !strings.Contains(body, `tickbox_ptpd_instance_selected{service="ptpd",sync_instance="freerun1"} 1`) {
			return fmt.Errorf("/metrics lacks ptpd's selected instance:\n%.3000s", body)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// The Kea channel over HTTP, routed by "service", as kea-shell and
	// Stork talk to a Control Agent.
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/",
		strings.NewReader(`{"command": "status-get", "service": ["mdiod", "nosuch"]}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("gokrazy", v.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var answers []struct {
		Result    int
		Text      string
		Arguments map[string]any
	}
	if err := json.Unmarshal(body, &answers); err != nil || len(answers) != 2 {
		t.Fatalf("POST / status-get for mdiod and nosuch: %v\n%s", err, body)
	}
	if answers[0].Result != 0 || answers[0].Arguments["pid"] == nil {
		t.Errorf("mdiod's status-get through the hub: %s", body)
	}
	if answers[1].Result != 1 || !strings.Contains(answers[1].Text, "forwarding socket is not configured for the server type nosuch") {
		t.Errorf("unknown service through the hub: %s", body)
	}

	// ctl -s over ssh reaches ptpd through the hub's socket.
	out, err := v.ssh(ctx, "/user/ctl", "-s", "ptpd", "instances-get")
	if err != nil {
		t.Fatalf("ctl -s ptpd instances-get: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"freerun1"`) || !strings.Contains(out, `"result": 0`) {
		t.Errorf("ctl -s ptpd instances-get:\n%s", out)
	}
	// services-get is the hub's own command; every daemon reports the
	// version the image was built as, and so does the hub.
	out, err = v.ssh(ctx, "/user/ctl", "kea", "/run/ctl/control.sock", "services-get")
	if err != nil || !strings.Contains(out, "4 of 4 services up") {
		t.Errorf("services-get: %v\n%s", err, out)
	}
	var sg struct {
		Arguments struct {
			Services []struct{ Service, Version string }
		}
	}
	if err := json.Unmarshal([]byte(out), &sg); err != nil || len(sg.Arguments.Services) != 4 {
		t.Errorf("services-get: %v\n%s", err, out)
	}
	for _, s := range sg.Arguments.Services {
		if s.Version != v.version {
			t.Errorf("%s reports version %q, want %q", s.Service, s.Version, v.version)
		}
	}
	out, err = v.ssh(ctx, "/user/ctl", "kea", "/run/ctl/control.sock", "version-get")
	if err != nil || !strings.Contains(out, `"text": "`+v.version+`"`) || !strings.Contains(out, `\nbuilt: 20`) {
		t.Errorf("the hub's version-get: %v\n%s", err, out)
	}
}
