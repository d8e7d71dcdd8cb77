package kea

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// HTTPHandler serves the Kea control channel over HTTP as Kea's Control
// Agent does: POST with Content-Type application/json and the command
// map as the body, on any path. The request is processed as on the unix
// socket (the same code: checks, registry, routing on "service" when
// opts.Forward is set) and answered with status 200 and a JSON list: the
// answer of each service the request names, or the one answer of a
// command run here, as the agent wraps its own answers too.
//
// Like the agent it adds "remote-address" (the client's IP) to the
// command map, so that a daemon receives what the agent would send it.
//
// Requests the agent refuses before running anything get its stock
// answer, not in a list: status 400 and { "result": 400, "text": "Bad
// Request" } for a method other than POST, a missing or other
// Content-Type, no Content-Length (a chunked body), and a body that is
// not one JSON value. An empty body is the agent's "NULL command
// parameter" failure. Unlike the agent, which has no limit, a body over
// opts.MaxRequest (DefaultMaxRequest, 16 MiB, when 0) gets 413, and more
// than opts.MaxConns requests at once (ctl.DefaultMaxConns when 0) get
// 503 for the excess, both in the same stock shape.
//
// Commands run in the request's context: a client that goes away
// cancels its command. Stream commands are refused, as on the socket.
func HTTPHandler(srv *ctl.Server, opts Options) http.Handler {
	if opts.MaxRequest <= 0 {
		opts.MaxRequest = DefaultMaxRequest
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = ctl.DefaultMaxConns
	}
	return &httpChannel{
		engine: engine{front: ctl.FrontHTTP, opts: opts, log: srv.Logger().With("frontend", "kea-http"), r: srv.Registry()},
		slots:  make(chan struct{}, opts.MaxConns),
	}
}

type httpChannel struct {
	engine
	// slots bounds the requests being processed, each holding a body of
	// up to MaxRequest bytes.
	slots chan struct{}
}

// WriteHTTPStatus writes the Control Agent's stock answer for an HTTP
// status: the status code, Content-Type application/json and the body
// { "result": CODE, "text": "REASON" }, as Kea's HttpResponseJson makes
// it. The hub's 401 for a request without valid credentials is one.
func WriteHTTPStatus(w http.ResponseWriter, code int) {
	body := appendKeaResult(nil, ctl.Result{Code: ctl.Code(code), Text: http.StatusText(code)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

func (h *httpChannel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.log.Info("refusing request: not POST", "method", r.Method, "remote", r.RemoteAddr)
		WriteHTTPStatus(w, http.StatusBadRequest)
		return
	}
	// Kea compares the header's whole value: a charset parameter is
	// refused too.
	if r.Header.Get("Content-Type") != "application/json" {
		h.log.Info("refusing request: Content-Type is not application/json", "content-type", r.Header.Get("Content-Type"), "remote", r.RemoteAddr)
		WriteHTTPStatus(w, http.StatusBadRequest)
		return
	}
	if r.ContentLength < 0 {
		h.log.Info("refusing request without Content-Length", "remote", r.RemoteAddr)
		WriteHTTPStatus(w, http.StatusBadRequest)
		return
	}
	if r.ContentLength > int64(h.opts.MaxRequest) {
		h.log.Warn("refusing request: body too large", "bytes", r.ContentLength, "limit", h.opts.MaxRequest, "remote", r.RemoteAddr)
		WriteHTTPStatus(w, http.StatusRequestEntityTooLarge)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.log.Warn("refusing request: too many at once", "limit", cap(h.slots), "remote", r.RemoteAddr)
		WriteHTTPStatus(w, http.StatusServiceUnavailable)
		return
	}
	body := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		h.log.Info("reading request body failed", "err", err, "remote", r.RemoteAddr)
		WriteHTTPStatus(w, http.StatusBadRequest)
		return
	}
	reply, ok := h.handleBody(r.Context(), body, remoteIP(r.RemoteAddr))
	if !ok {
		WriteHTTPStatus(w, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(reply); err != nil {
		h.log.Debug("client left before reading the reply", "err", err, "remote", r.RemoteAddr)
	}
}

// handleBody runs one request body and returns the agent's reply list;
// ok is false for a body that is not one JSON value (status 400).
func (h *httpChannel) handleBody(ctx context.Context, body []byte, remote string) (reply []byte, ok bool) {
	if len(body) == 0 {
		return listOf(keaReply(ctl.Fail("Command processing failed: NULL command parameter"))), true
	}
	v, err := parseKeaBody(body)
	if err != nil {
		h.log.Info("bad request JSON", "err", err)
		return nil, false
	}
	if m, isMap := v.(map[string]any); isMap && remote != "" {
		m["remote-address"] = remote
	}
	out := h.dispatch(ctx, v)
	if len(out) > 0 && out[0] == '[' {
		return out, true
	}
	return listOf(out), true
}

// listOf wraps one answer in a list, as the agent does with its own.
func listOf(answer []byte) []byte {
	b := make([]byte, 0, len(answer)+4)
	b = append(b, "[ "...)
	b = append(b, answer...)
	return append(b, " ]"...)
}

// parseKeaBody parses an HTTP body as Kea's Element::fromJSON parses a
// string: one value, whitespace around it, nothing else (no comments:
// they are a control-socket framing feature).
func parseKeaBody(b []byte) (any, error) {
	p := &keaParser{in: b, file: "<string>", line: 1, pos: 1}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipWS()
	if p.i < len(p.in) {
		return nil, &JSONError{Msg: "Extra data", File: p.file, Line: p.line, Col: p.pos, HasPos: true}
	}
	return v, nil
}

// remoteIP is the host part of an http.Request's RemoteAddr.
func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
