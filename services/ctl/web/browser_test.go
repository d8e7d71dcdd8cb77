package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickbox-fw/tickbox/internal/testdaemon"
	"github.com/tickbox-fw/tickbox/internal/testutil"
	"github.com/tickbox-fw/tickbox/services/ptpd/ptp/ptptest"
)

// browser is a headless chromium with the console of its one tab
// collected.
type browser struct {
	ctx     context.Context
	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// startBrowser runs Debian's chromium headless, with a fresh profile and
// nothing of its own on the network.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	exe := testutil.NeedTool(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	b := &browser{ctx: ctx}
	// Console subscribes before the page loads; collect in the
	// background until the test ends.
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// errors returns the console errors and exceptions so far, except
// those from a URL that contains allow (when given), each with its URL.
func (b *browser) errors(allow ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
next:
	for _, m := range b.console {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException && m.Type != "assert" {
			continue
		}
		for _, a := range allow {
			if strings.Contains(m.URL, a) {
				continue next
			}
		}
		out = append(out, fmt.Sprintf("%s (%s:%d)", m.String(), m.URL, m.Line))
	}
	return out
}

func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitJS waits until the expression is true, polling the DOM.
func waitJS(t *testing.T, b *browser, what, expr string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting %v for %s (%s): %v\nconsole: %q", timeout, what, expr, err, b.errors())
	}
}

// screenshot saves a PNG of the whole page as a test artefact.
func screenshot(t *testing.T, b *browser, name string) string {
	t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("TICKBOX_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// services is the services table as the page shows it.
const servicesJS = `Array.from(document.querySelectorAll('#services-body tr')).map(r => r.dataset.service + '=' + r.dataset.up).join(' ')`

// TestBrowser loads the page in chromium in front of a real hub: ptpd
// slaved to a ptp4l grandmaster across network namespaces (ptp4l runs
// free, ptpd on a virtual clock: neither touches the host clock), mctpd,
// mdiod on simulated PHYs and the appliance watching ptpd's namespace.
// The page loads with no console error, shows the services, plots
// ptpd's offset as it comes, shows a stopped daemon down within 5 s,
// and keeps updating by polling when the event stream is refused.
func TestBrowser(t *testing.T) {
	if why := ptptest.Available(); why != "" {
		testutil.Require(t, "network namespaces: "+why)
	}
	b := startBrowser(t)
	bins := testdaemon.Build(t, "ptpd", "mctpd", "mdiod", "appliance")
	dir := testutil.ShortDir(t)

	nsM, err := ptptest.NewNS("tbwm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsM.Close() })
	nsS, err := ptptest.NewNS("tbws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsS.Close() })
	if err := ptptest.Veth(nsM, "tbwm0", "169.254.41.1/24", nsS, "tbws0", "169.254.41.2/24"); err != nil {
		t.Fatal(err)
	}
	gm, err := ptptest.StartPtp4l(nsM, ptptest.Ptp4lConfig{Iface: "tbwm0", Dir: testutil.ShortDir(t), Options: ptptest.MasterOptions()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gm.Stop)

	ptpSock := filepath.Join(dir, "ptpd.sock")
	writeFile(t, filepath.Join(dir, "ptpd.cfg"), fmt.Sprintf(`[general]
sync_module ptp ptp1
control_path %s
state_path %s
hotplug_detection_mode manual

[ptp1]
ptp_mode slave
interface tbws0
ptp_domain 0
`, filepath.Join(dir, "ptpd.ctl"), filepath.Join(dir, "state")))
	ptpd := testdaemon.Start(t, "ptpd", "ip", "netns", "exec", nsS.Name, bins["ptpd"], "-f", filepath.Join(dir, "ptpd.cfg"), "-kea", ptpSock, "-virtual-clock", "500us,30")
	testdaemon.WaitKea(t, ptpd, ptpSock)
	_, mctpSock := startMctpd(t, bins["mctpd"], dir)
	mdioSock := filepath.Join(dir, "mdiod.sock")
	mdiod := startMdiod(t, bins["mdiod"], mdioSock)
	applianceSock := filepath.Join(dir, "appliance.sock")
	appliance := testdaemon.Start(t, "appliance", "ip", "netns", "exec", nsS.Name, bins["appliance"], "-sfptpd-socket", "", "-kea", applianceSock)
	testdaemon.WaitKea(t, appliance, applianceSock)

	h := newHub(t, [][2]string{{"ptpd", ptpSock}, {"mctpd", mctpSock}, {"mdiod", mdioSock}, {"appliance", applianceSock}})
	p := New(h, Options{Logger: quiet()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	srv := httptest.NewServer(p.Handler())
	// The poller's end ends the event streams, which the server's Close
	// waits for.
	t.Cleanup(func() { cancel(); <-done; srv.CloseClientConnections(); srv.Close() })

	// The page loads, draws the services and follows the stream.
	b.do(t, "loading the page", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible("#services-body tr"))
	waitJS(t, b, "every service up", servicesJS+` === 'ptpd=true mctpd=true mdiod=true appliance=true'`, 30*time.Second)
	waitJS(t, b, "the event stream", `document.getElementById('conn').textContent === 'live'`, 30*time.Second)
	if v := eval[string](t, b, `document.querySelector('#services-body tr[data-service="mdiod"] td:nth-child(4)').textContent`); v == "" {
		t.Error("no version shown for mdiod")
	}

	// ptpd locks to ptp4l, and the offset plot gains points.
	waitJS(t, b, "ptp1 selected and slave", `(() => { const r = document.querySelector('#ptp-instances tr[data-instance="ptp1"]'); return !!r && r.dataset.state === 'slave' && r.children[3].textContent === 'yes'; })()`, 60*time.Second)
	n0 := eval[int](t, b, `+document.getElementById('offset-plot').dataset.points`)
	waitJS(t, b, "five more offset points", fmt.Sprintf(`+document.getElementById('offset-plot').dataset.points >= %d`, n0+5), 30*time.Second)
	if n := eval[int](t, b, `document.querySelectorAll('#offset-plot canvas').length`); n != 1 {
		t.Errorf("%d canvases in the offset plot", n)
	}
	if got := eval[string](t, b, `document.querySelector('#ptp-summary').textContent`); !strings.Contains(got, "stateslave") {
		t.Errorf("ptp summary %q", got)
	}

	// mctpd's endpoint and counters, mdiod's ports, an appliance event.
	waitJS(t, b, "mctpd's endpoint", `document.getElementById('mctp-endpoint').textContent.startsWith('EID8')`, 10*time.Second)
	waitJS(t, b, "mctpd's counters", `document.getElementById('mctp-messages').textContent.includes('messages-in')`, 10*time.Second)
	waitJS(t, b, "mdiod's ports", `(() => { const a = document.querySelector('#mdio-ports tr[data-port="A"]'), b = document.querySelector('#mdio-ports tr[data-port="B"]'); return !!a && !!b && a.dataset.link === 'false' && b.dataset.link === 'true' && b.textContent.includes('100 Mbit/s'); })()`, 10*time.Second)
	waitJS(t, b, "mdiod's link event", `document.getElementById('mdio-events').textContent.includes('link up 100MBit')`, 10*time.Second)
	if err := nsS.Run("ip", "link", "add", "tbwd0", "type", "veth", "peer", "name", "tbwd1"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the appliance's event for tbwd0", `document.getElementById('appliance-events').textContent.includes('tbwd0')`, 30*time.Second)

	screenshot(t, b, "status-page-up.png")

	// A daemon that stops is shown down within 5 s, with its error.
	mdiod.Stop(t)
	start := time.Now()
	waitJS(t, b, "mdiod down", `(() => { const r = document.querySelector('#services-body tr[data-service="mdiod"]'); return !!r && r.dataset.up === 'false'; })()`, 5*time.Second)
	t.Logf("mdiod shown down %v after it stopped", time.Since(start).Round(time.Millisecond))
	waitJS(t, b, "mdiod's error", `document.getElementById('mdio-errors').textContent.includes('mdiod.sock')`, 5*time.Second)
	if up := eval[string](t, b, servicesJS); up != "ptpd=true mctpd=true mdiod=false appliance=true" {
		t.Errorf("services %s", up)
	}
	screenshot(t, b, "status-page.png")
	b.do(t, "a phone's viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Sleep(time.Second))
	if w := eval[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the page is %d px wide on a 390 px phone", w)
	}
	screenshot(t, b, "status-page-phone.png")
	b.do(t, "the desktop viewport", chromedp.ResetViewport())

	if errs := b.errors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}

	// With the event stream refused, the page polls the snapshot and
	// keeps the plot going.
	noStream := http.NewServeMux()
	noStream.Handle("/", p.Handler())
	noStream.HandleFunc("/api/events", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "event streams are off", http.StatusServiceUnavailable)
	})
	srv2 := httptest.NewServer(noStream)
	t.Cleanup(func() { srv2.CloseClientConnections(); srv2.Close() })
	b.do(t, "loading the page without its stream", chromedp.Navigate(srv2.URL+"/"), chromedp.WaitVisible("#services-body tr"))
	waitJS(t, b, "polling", `document.getElementById('conn').textContent === 'polling'`, 30*time.Second)
	n1 := eval[int](t, b, `+document.getElementById('offset-plot').dataset.points`)
	waitJS(t, b, "five more offset points by polling", fmt.Sprintf(`+document.getElementById('offset-plot').dataset.points >= %d`, n1+5), 30*time.Second)
	// The refused stream is the only error the browser may report.
	if errs := b.errors(srv2.URL + "/api/events"); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
