package kea

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"github.com/tickbox-fw/tickbox/services/ctl/internal/jsonenc"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultIdleTimeout is how long a Kea connection may stay silent, as
// in Kea (TIMEOUT_DHCP_SERVER_RECEIVE_COMMAND).
const DefaultIdleTimeout = 10 * time.Second

// keaWriteChunk is how much of a reply is written per deadline, so that
// a slow but live reader is not cut off while a stalled one is.
const keaWriteChunk = 64 << 10

// keaMaxOutput bounds the text a non-streaming handler writes to
// call.Out that is kept for the reply.
const keaMaxOutput = 1 << 20

// Options configures the Kea control channel.
type Options struct {
	ctl.StreamOptions
	// IdleTimeout closes a connection that sends nothing for this long,
	// after a timeout reply; it restarts on every read and write. 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxRequest bounds a request's raw size, comments and leading
	// whitespace included; 0 means DefaultMaxRequest.
	MaxRequest int
	// Forward makes the channel a hub: a request with a non-empty
	// "service" list is routed, as Kea's Control Agent routes it, and
	// answered with a list of one answer per service. req is the
	// request as the Control Agent forwards it, "service" included (a
	// daemon ignores it), and the reply is that daemon's JSON answer (a
	// map, or a list of maps). Returning an error wrapping ErrNoService
	// says that this one service is unknown; other errors are worded
	// as the Control Agent words them (see forwardReason).
	//
	// Nil, which every daemon uses, ignores "service" and runs the
	// command here, as Kea's daemons do: that is what lets Kea's
	// Control Agent, kea-shell and tools built on them drive a daemon.
	Forward func(ctx context.Context, service string, req []byte) ([]byte, error)
}

// ErrNoService is returned (wrapped) by a Forward hook for a service
// it has no socket for; the answer is then Kea's "forwarding socket is
// not configured" text rather than "server is likely to be offline".
var ErrNoService = errors.New("no forwarding socket for this service")

// Server is a running Kea control channel: AF_UNIX SOCK_STREAM, one
// JSON command per connection, answered with
// { "arguments": ..., "result": N, "text": "..." } before the server
// closes the connection.
type Server struct {
	a *unixsock.Acceptor
	// The engine and maxConns are set before the accept loop starts,
	// which runs serve and reject before Serve has stored the acceptor.
	engine
	maxConns int

	// hardCtx is the context commands run in. It is cancelled when the
	// close deadline passes: in-flight commands run undisturbed until
	// then. One context for all requests keeps the per-request path free
	// of goroutines and allocations.
	hardCtx  context.Context
	hardStop context.CancelFunc
	closing  atomic.Bool
	// states holds finished connections' connState for new ones.
	states sync.Pool
}

// Serve starts a Kea control channel on spec and adds it to srv.
func Serve(srv *ctl.Server, spec ctl.SocketSpec, opts Options) (*Server, error) {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxRequest <= 0 {
		opts.MaxRequest = DefaultMaxRequest
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = ctl.DefaultMaxConns
	}
	k := &Server{engine: engine{front: ctl.FrontKea, opts: opts, log: srv.Logger().With("frontend", "kea"), r: srv.Registry()}, maxConns: opts.MaxConns}
	k.hardCtx, k.hardStop = context.WithCancel(context.Background())
	a, err := unixsock.AcceptInline(srv.Inheritance(), srv.Logger(), "kea", "unix", spec, opts.StreamOptions, k.serve, k.reject)
	if err != nil {
		return nil, err
	}
	k.a = a
	if err := srv.Add(k); err != nil {
		k.Stop(context.Background(), false)
		return nil, err
	}
	return k, nil
}

// Addr returns the listening address.
func (k *Server) Addr() string { return k.a.Addr() }

// Active returns the number of connections being served.
func (k *Server) Active() int { return k.a.Active() }

// Front implements ctl.ConnCounter.
func (k *Server) Front() ctl.Front { return ctl.FrontKea }

// Conns implements ctl.ConnCounter.
func (k *Server) Conns() (active, accepted uint64) {
	return uint64(k.a.Active()), k.a.Accepted()
}

// Close stops the channel: idle connections are closed without a reply,
// commands already running finish and send their reply until ctx ends.
func (k *Server) Close(ctx context.Context) error {
	_, err := k.Stop(ctx, false)
	return err
}

// engine is the request processing both channels share, the unix
// socket (Server) and HTTP (HTTPHandler): check the command map, then
// run it here or route it on "service".
type engine struct {
	// front names the channel in the registry's request counts.
	front ctl.Front
	r     *ctl.Registry
	opts  Options
	log   *slog.Logger
}

// Stop implements ctl.Frontend. Unlike a bare acceptor's, it cancels
// running commands only when ctx runs out, not at once.
func (k *Server) Stop(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	k.closing.Store(true)
	// Wake the reads that wait for a request: each sees closing and
	// drops its connection without a reply. A connection served from
	// now on sees closing before it reads.
	k.a.EachConn(func(c *net.UnixConn) { c.SetReadDeadline(time.Unix(1, 0)) })
	stop := context.AfterFunc(ctx, k.hardStop)
	defer stop()
	defer k.hardStop()
	return k.a.Close(ctx, handoff)
}

// keaReply encodes one answer as Kea does: keys sorted, which puts them
// in the order arguments, result, text; empty text and nil arguments
// left out.
func keaReply(r ctl.Result) []byte {
	// Room for most answers without growing.
	b := make([]byte, 0, 256)
	return appendKeaResult(b, r)
}

func appendKeaResult(b []byte, r ctl.Result) []byte {
	b = append(b, "{ "...)
	if r.Args != nil {
		b = append(b, `"arguments": `...)
		b = appendKeaJSON(b, r.Args)
		b = append(b, ", "...)
	}
	b = append(b, `"result": `...)
	b = appendKeaJSON(b, int(r.Code))
	if r.Text != "" {
		b = append(b, `, "text": `...)
		b = jsonenc.AppendString(b, r.Text)
	}
	return append(b, " }"...)
}

func (k *Server) reject(c *net.UnixConn) {
	if rc, err := c.SyscallConn(); err == nil {
		var cio connIO
		cio.init()
		cio.start(c, rc, k.opts.IdleTimeout, &k.closing)
		k.write(&cio, keaReply(ctl.Fail("too many connections (limit %d)", k.maxConns)))
	}
	lingerClose(c, rejectLinger)
}

// rejectLinger bounds how long a rejected connection is kept open after
// its reply.
const rejectLinger = time.Second

// lingerClose ends a connection that was answered without being read.
// The client's request may still be on its way; closing with it unread
// would reset the client, and Linux then reports the reset before the
// reply queued for it, so the reply would be lost. It half-closes, then
// reads and discards until the client closes (which it does once it has
// read the reply and EOF), for at most d and 1 MiB.
func lingerClose(c *net.UnixConn, d time.Duration) {
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(d))
	io.Copy(io.Discard, io.LimitReader(c, 1<<20))
}

// KeepOpenCommand is the request that turns a connection into a
// persistent one: a tickbox extension of the Kea channel, for the hub.
// The server answers it with result 0 and from then on answers each
// request in turn on the same connection, closing it only when the
// client does, when it stays idle for the idle timeout (silently, as
// nothing is pending), or on a framing error. A Kea daemon answers it as
// an unknown command and closes, which tells a client to fall back to a
// connection per request.
const KeepOpenCommand = "tickbox-keep-open"

// okKeptOpen is the answer to KeepOpenCommand.
var okKeptOpen = ctl.OK("connection kept open", nil)

// serve runs one connection: frame, run, reply, close; or, once the
// client asked for KeepOpenCommand, frame, run and reply until the
// client leaves.
func (k *Server) serve(_ context.Context, c *net.UnixConn) {
	defer c.Close()
	// On close, Stop wakes a blocked read; the loop then sees closing and
	// drops the connection without a reply.
	rc, err := c.SyscallConn()
	if err != nil {
		k.log.Info("read failed", "err", err)
		return
	}
	st := k.getConnState(c, rc)
	defer k.putConnState(st)
	cio := &st.cio
	buf := st.buf
	// pending holds bytes read past a request: the next request's start
	// on a kept-open connection.
	var pending []byte
	keepOpen := false
	for {
		feed := &st.feed
		feed.reset(k.opts.MaxRequest)
		// trailing is set when bytes followed the request in what was
		// read: more may still be queued, and closing a unix socket with
		// unread input resets the peer instead of giving it EOF.
		trailing := false
		if len(pending) > 0 {
			used := feed.Write(pending)
			pending = pending[used:]
			trailing = len(pending) > 0
		}
		for feed.Status() == feedNeedMore {
			if k.closing.Load() {
				k.log.Debug("closing idle connection on shutdown", "partial", len(feed.Output()))
				return
			}
			// The idle deadline is set only if the read has to wait.
			n, err := cio.readWait(buf)
			if err == errClosingConn {
				k.log.Debug("closing idle connection on shutdown", "partial", len(feed.Output()))
				return
			}
			if n > 0 {
				if used := feed.Write(buf[:n]); used < n {
					trailing = true
					pending = append(pending[:0], buf[used:n]...)
				}
				if n == len(buf) && len(buf) < 64<<10 {
					buf = make([]byte, 4*len(buf))
					st.buf = buf
				}
				continue
			}
			partial := len(feed.Output())
			switch {
			case err == nil:
				continue
			case k.closing.Load():
				k.log.Debug("closing connection on shutdown", "partial", partial)
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				if keepOpen && feed.Consumed() == 0 {
					k.log.Debug("kept-open connection idle; closing")
					return
				}
				text := "Connection over control channel timed out"
				if partial > 0 {
					text += fmt.Sprintf(", discarded partial command of %d bytes", partial)
				}
				k.log.Info("connection timed out", "partial", partial)
				k.write(cio, keaReply(ctl.Fail("%s", text)))
				finishConn(c)
				return
			case errors.Is(err, io.EOF):
				if partial > 0 {
					k.log.Info("connection closed by peer; discarding partial command", "bytes", partial)
				} else {
					k.log.Debug("connection closed by peer with no input")
				}
				return
			default:
				k.log.Info("read failed", "err", err)
				return
			}
		}
		cio.clearDeadline()

		var reply []byte
		switch {
		case feed.Status() == feedFailed:
			k.log.Warn("bad request framing", "err", feed.Err())
			k.r.Count(k.front, ctl.Error)
			reply = keaReply(ctl.Fail("%s", feed.Err()))
		case !keepOpen && isKeepOpen(feed.Output()):
			keepOpen = true
			k.log.Debug("connection kept open")
			reply = keptOpen
		default:
			reply = k.handleRequest(k.hardCtx, feed.Output())
		}
		if err := k.write(cio, reply); err != nil {
			return
		}
		if keepOpen && feed.Status() != feedFailed {
			continue
		}
		// The common case, one request and nothing after it, needs only
		// the deferred close: two syscalls fewer per request.
		if trailing || feed.Status() == feedFailed {
			finishConn(c)
		}
		return
	}
}

// connBuf is the read buffer a connection starts with: an idle
// connection holds only this, so that thousands of them stay cheap.
const connBuf = 512

// connPooledMax bounds the feed buffer a connection's state keeps for
// the next connection; a larger one (a large request) is dropped.
const connPooledMax = 4 << 10

// connState is what serving a connection needs beyond net's own. It is
// pooled per server: a connection reuses a finished one's buffers
// rather than allocating and zeroing them.
type connState struct {
	cio  connIO
	buf  []byte
	feed keaFeed
}

func (k *Server) getConnState(c *net.UnixConn, rc syscall.RawConn) *connState {
	st, _ := k.states.Get().(*connState)
	if st == nil {
		st = &connState{buf: make([]byte, connBuf)}
		st.cio.init()
	}
	st.cio.start(c, rc, k.opts.IdleTimeout, &k.closing)
	return st
}

func (k *Server) putConnState(st *connState) {
	st.cio.start(nil, nil, 0, nil)
	if len(st.buf) != connBuf {
		st.buf = make([]byte, connBuf)
	}
	st.feed.reset(0)
	if cap(st.feed.out) > connPooledMax {
		st.feed.out = nil
	}
	k.states.Put(st)
}

// isKeepOpen reports whether a framed request is exactly
// {"command": KeepOpenCommand}. The byte test keeps every other request
// from paying for a second parse.
func isKeepOpen(req []byte) bool {
	if !bytes.Contains(req, []byte(KeepOpenCommand)) {
		return false
	}
	v, err := parseKeaWire(req)
	if err != nil {
		return false
	}
	m, ok := v.(map[string]any)
	return ok && len(m) == 1 && m["command"] == KeepOpenCommand
}

// write sends all of b. What the socket takes at once needs no timer;
// the rest is written with the idle deadline, restarted per chunk.
func (k *Server) write(cio *connIO, b []byte) error {
	n, err := cio.tryWrite(b)
	b = b[n:]
	if err != nil && !errors.Is(err, errWouldBlock) {
		k.writeFailed(err, len(b))
		return err
	}
	for len(b) > 0 {
		n := min(len(b), keaWriteChunk)
		cio.c.SetWriteDeadline(time.Now().Add(k.opts.IdleTimeout))
		w, err := cio.c.Write(b[:n])
		b = b[w:]
		if err != nil {
			k.writeFailed(err, len(b))
			return err
		}
	}
	return nil
}

// writeFailed logs a reply that could not be written whole.
func (k *Server) writeFailed(err error, unsent int) {
	// A client that leaves before reading its reply is not the server's
	// problem; say so quietly.
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		k.log.Debug("client left before reading the reply", "err", err, "unsent", unsent)
	} else {
		k.log.Info("reply write failed", "err", err, "unsent", unsent)
	}
}

// finishConn half-closes after a reply and discards input still queued,
// so that closing does not turn the client's EOF into ECONNRESET (Linux
// resets the peer when a unix socket is closed with unread data, such
// as trailing bytes after the request).
func finishConn(c *net.UnixConn) {
	c.CloseWrite()
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var scratch [4096]byte
	left := 1 << 20
	rc.Read(func(fd uintptr) bool {
		for left > 0 {
			n, err := syscall.Read(int(fd), scratch[:])
			if n <= 0 || err != nil {
				break
			}
			left -= n
		}
		return true
	})
}

// keaCommandError formats Kea's text for a malformed command map.
func keaCommandError(format string, a ...any) []byte {
	return keaReply(ctl.Fail("Error during command processing: invalid command: "+format, a...))
}

// refuse counts a request refused before it reached the registry.
func (k *engine) refuse(reply []byte) []byte {
	k.r.Count(k.front, ctl.Error)
	return reply
}

// handleRequest parses a framed request and answers it.
func (k *engine) handleRequest(ctx context.Context, text []byte) []byte {
	v, err := parseKeaWire(text)
	if err != nil {
		k.log.Warn("bad request JSON", "err", err)
		k.r.Count(k.front, ctl.Error)
		return keaReply(ctl.Fail("%s", err.Error()))
	}
	return k.dispatch(ctx, v)
}

// keaRequestKey reports whether key may appear in a request map.
func keaRequestKey(key string) bool {
	switch key {
	case "command", "arguments", "service", "remote-address":
		return true
	}
	return false
}

// dispatch checks the request map as Kea's parseCommand does (same
// order, same texts), then routes it or runs it.
func (k *engine) dispatch(ctx context.Context, v any) []byte {
	m, ok := v.(map[string]any)
	if !ok {
		return k.refuse(keaCommandError("expected toplevel entry to be a map, got %s instead", keaTypeName(v)))
	}
	if _, ok := m["command"]; !ok {
		return k.refuse(keaCommandError("does not contain mandatory 'command'"))
	}
	// Kea names the first unsupported key in sorted order: the least.
	bad, found := "", false
	for key := range m {
		if !keaRequestKey(key) && (!found || key < bad) {
			bad, found = key, true
		}
	}
	if found {
		return k.refuse(keaCommandError("unsupported parameter '%s'", bad))
	}
	name, ok := m["command"].(string)
	if !ok {
		// Kea names the type of the whole request here, not of the
		// command value; clients match this text, so keep it.
		return k.refuse(keaCommandError("expected 'command' to be a string, got map instead"))
	}
	// Only a hub routes on "service", as only Kea's Control Agent does;
	// a daemon ignores it whatever its value, as Kea's daemons do (their
	// command manager never reads it). The Control Agent forwards the
	// request with "service" still in it, so a daemon that routed would
	// answer every forwarded request with a forwarding error.
	if k.opts.Forward != nil {
		if sv, ok := m["service"]; ok {
			// As the Control Agent: any value but a list, null
			// included, is refused before anything is forwarded.
			list, ok := sv.([]any)
			if !ok {
				return k.refuse(keaReply(ctl.Fail("service value must be a list")))
			}
			services := make([]string, len(list))
			for i, e := range list {
				s, ok := e.(string)
				if !ok {
					return k.refuse(keaCommandError("expected 'service' to be a list of strings, got %s in it", keaTypeName(e)))
				}
				services[i] = s
			}
			if len(services) > 0 {
				return k.forward(ctx, name, m, services)
			}
		}
	}
	r := k.run(ctx, name, m["arguments"])
	if k.opts.Forward != nil && r.Code == ctl.Unsupported {
		if _, known := k.r.Lookup(name); !known {
			// The Control Agent explains here that a command for a
			// daemon needs "service"; so does the hub, in its own words.
			r.Text += ` The request names no "service", so the hub ran it itself; to send it to a daemon, add "service": [ "NAME" ] with a service the hub fronts (services-get lists them).`
		}
	}
	return keaReply(r)
}

// run looks the command up, checks its arguments and runs it through
// the registry. As in Kea, an unknown command is reported before its
// arguments are looked at.
func (k *engine) run(ctx context.Context, name string, args any) ctl.Result {
	cmd, ok := k.r.Lookup(name)
	if !ok {
		k.log.Info("unsupported command", "command", name)
		k.r.Count(k.front, ctl.Unsupported)
		return ctl.UnsupportedResult(name)
	}
	var named map[string]any
	if args != nil {
		named, ok = args.(map[string]any)
		switch {
		case ok:
		case cmd.IgnoreExtraArgs:
			// Kea's common commands never read their arguments, so
			// any value passes; there is nothing in it to keep.
			k.log.Debug("ignoring arguments the command does not take", "command", name, "type", keaTypeName(args))
		default:
			k.r.Count(k.front, ctl.Error)
			return ctl.Fail("Error during command processing: invalid command '%s': expected 'arguments' to be a map, got %s instead", name, keaTypeName(args))
		}
	}
	if cmd.Stream {
		k.r.Count(k.front, ctl.Unsupported)
		return ctl.Result{Code: ctl.Unsupported, Text: fmt.Sprintf("'%s' streams its output and cannot run on the one-shot Kea channel; use the console or the ipc socket", name)}
	}
	// The schema binds the parsed map as it is; only a handler that asks
	// for the raw arguments has them encoded.
	in := ctl.Input{Named: named, Front: k.front}
	if named != nil {
		in.Raw = func() json.RawMessage { return appendKeaJSON(nil, named) }
	}
	out := ctl.OutputBuffer{Max: keaMaxOutput}
	// Guarded: the arguments of a disabled Debug call still cost an
	// allocation, and its frame a stack growth, on every request.
	if k.log.Enabled(ctx, slog.LevelDebug) {
		k.log.Debug("command received", "command", name)
	}
	r := k.r.Run(ctx, cmd, in, &out)
	if r.Text == "" && out.Len() > 0 {
		r.Text = strings.TrimRight(out.String(), "\n")
	}
	return r
}

// forward implements the Control Agent's routing: one answer per
// service, in a list. Each daemon gets the request as the Control Agent
// sends it: the whole command map, "service" (and "remote-address", when
// the request came over HTTP) included, in Kea's layout.
func (k *engine) forward(ctx context.Context, name string, m map[string]any, services []string) []byte {
	body := appendKeaJSON(nil, m)
	var answers []any
	for _, svc := range services {
		k.log.Debug("forwarding command", "command", name, "service", svc)
		resp, err := k.opts.Forward(ctx, svc, body)
		if errors.Is(err, ErrNoService) {
			answers = append(answers, keaResultMap(ctl.Fail("forwarding socket is not configured for the server type %s", svc)))
			continue
		}
		if err != nil {
			k.log.Warn("forwarding failed", "command", name, "service", svc, "err", err)
			answers = append(answers, keaResultMap(ctl.Fail("unable to forward command to the %s service: %s. The server is likely to be offline", svc, forwardReason(err))))
			continue
		}
		answers = append(answers, parseForwarded(svc, resp)...)
	}
	return appendKeaJSON(nil, answers)
}

// forwardReason words a failed forward as the Control Agent does, with
// the message of the Boost error it gets: the C library's text for an
// errno ("No such file or directory", "Connection refused"), "End of
// file" for a daemon that closed without answering, and "Operation
// canceled" for one that did not answer in time (the agent cancels the
// exchange at its timeout). The full error is in the log.
func forwardReason(err error) string {
	var t interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout()):
		return "Operation canceled"
	case errors.Is(err, ErrNoReply) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "End of file"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		r, n := utf8.DecodeRuneInString(s)
		return string(unicode.ToUpper(r)) + s[n:]
	}
	return err.Error()
}

// keaResultMap is a Result as a JSON map value.
func keaResultMap(r ctl.Result) map[string]any {
	m := map[string]any{"result": int(r.Code)}
	if r.Text != "" {
		m["text"] = r.Text
	}
	if r.Args != nil {
		m["arguments"] = r.Args
	}
	return m
}

// parseForwarded turns a daemon's reply into list elements: a map is one
// element, a list contributes its elements.
func parseForwarded(svc string, resp []byte) []any {
	bad := func(why string) []any {
		return []any{keaResultMap(ctl.Fail("invalid answer from the %s service: %s", svc, why))}
	}
	f := newKeaFeed(len(resp) + 1)
	f.Write(resp)
	switch f.Status() {
	case feedFailed:
		return bad(f.Err())
	case feedNeedMore:
		return bad("incomplete JSON")
	}
	v, err := parseKeaWire(f.Output())
	if err != nil {
		return bad(err.Error())
	}
	switch x := v.(type) {
	case map[string]any:
		return []any{x}
	case []any:
		return x
	}
	return bad("expected a map or a list, got " + keaTypeName(v))
}
