package metrics_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/metrics"
)

// BenchmarkScrape measures one full GET /metrics over HTTP with every
// daemon up behind a real hub: the hub asks ptpd, mctpd and mdiod for
// status-get, version-get and their own command over their Kea sockets
// and the handler encodes the series. The target is 5 ms per scrape.
func BenchmarkScrape(b *testing.B) {
	h := startDaemons(b)
	self := ctl.NewRegistry(ctl.Options{Name: "ctl", Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(metrics.Handler(metrics.Options{Source: h, Self: self, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	get := func() string {
		resp, err := http.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
		}
		return string(body)
	}
	// Every daemon must be up, or the benchmark measures timeouts.
	first := get()
	for _, svc := range []string{"ptpd", "mctpd", "mdiod"} {
		if !strings.Contains(first, `tickbox_service_up{service="`+svc+`"} 1`) {
			b.Fatalf("%s not up:\n%s", svc, first)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}
