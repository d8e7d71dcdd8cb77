package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tickbox-fw/tickbox/internal/httpauth"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// The HTTP listener's basic auth: gokrazy's web interface user, so that
// the box has one password; the realm names the hub.
const (
	authUser  = "gokrazy"
	authRealm = "tickbox hub"
)

// route is one more page of the HTTP listener besides the Kea channel.
type route struct {
	// pattern is an http.ServeMux pattern. Give it a method, or a path
	// ending in {$}: a bare "/metrics" would conflict with "GET /".
	pattern string
	handler http.Handler
	// metrics marks the metrics endpoint, which needs the password only
	// with -metrics-auth, so that a Prometheus server needs none by
	// default.
	metrics bool
}

// httpMux builds the hub's HTTP routes: the Kea channel on "/" (it
// answers POST on any path, as Kea's Control Agent does, and 400 to
// other methods), then each route, all behind auth when auth is set
// (a metrics route only with metricsAuth). A page is one more route:
//
//	httpMux(keaChannel, auth, metricsAuth,
//		route{pattern: "GET /{$}", handler: statusPage},
//		route{pattern: "GET /metrics", handler: metrics, metrics: true})
func httpMux(keaChannel http.Handler, auth *httpauth.Basic, metricsAuth bool, routes ...route) *http.ServeMux {
	// The Kea channel's 401 is the Control Agent's: JSON, in its stock
	// shape. Other pages get plain text.
	keaDeny := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		kea.WriteHTTPStatus(w, http.StatusUnauthorized)
	})
	mux := http.NewServeMux()
	if auth == nil {
		mux.Handle("/", keaChannel)
	} else {
		mux.Handle("/", auth.Wrap(keaChannel, keaDeny))
	}
	for _, r := range routes {
		h := r.handler
		if auth != nil && (!r.metrics || metricsAuth) {
			h = auth.Wrap(h, nil)
		}
		mux.Handle(r.pattern, h)
	}
	return mux
}

// httpFrontend is the HTTP listener as a ctl.Frontend, so that it is
// shut down with the sockets. A re-exec does not hand it over: the new
// image listens again, and connections in the meantime are refused.
type httpFrontend struct {
	srv  *http.Server
	addr string
	done chan error
}

// serveHTTP starts an HTTP server for mux on addr.
func serveHTTP(addr string, mux http.Handler, log *slog.Logger) (*httpFrontend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	f := &httpFrontend{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			// A body of the largest request at a slow but live pace.
			ReadTimeout:    time.Minute,
			IdleTimeout:    time.Minute,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelInfo),
		},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	log.Info("http listening", "addr", f.addr)
	go func() { f.done <- f.srv.Serve(ln) }()
	return f, nil
}

// Addr implements ctl.Frontend.
func (f *httpFrontend) Addr() string { return f.addr }

// Stop implements ctl.Frontend: requests in flight finish until ctx
// ends, then the connections are closed.
func (f *httpFrontend) Stop(ctx context.Context, _ bool) (*unixsock.Files, error) {
	err := f.srv.Shutdown(ctx)
	if err != nil {
		f.srv.Close()
	}
	if serr := <-f.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return nil, err
}
