package ipc

import (
	"bufio"
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
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults of Options.
const (
	DefaultMaxLine    = 4096
	DefaultQueueBytes = 256 << 10
)

// ipcFlushTimeout bounds how long queued output may take to drain after a
// connection's input ended.
const ipcFlushTimeout = 5 * time.Second

// Options configures the IPC front end.
type Options struct {
	ctl.StreamOptions
	// MaxLine is the longest request line in bytes, not counting the
	// "\n" or "\r\n" terminator; 0 means DefaultMaxLine.
	MaxLine int
	// QueueBytes bounds a connection's queued output; 0 means
	// DefaultQueueBytes. Events beyond it are dropped for that client.
	QueueBytes int
}

func (o Options) withDefaults() Options {
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
	if o.QueueBytes <= 0 {
		o.QueueBytes = DefaultQueueBytes
	}
	if o.MaxConns <= 0 {
		o.MaxConns = ctl.DefaultMaxConns
	}
	return o
}

// Addr resolves nose's --ipc-server NAME: a plain name becomes
// /tmp/NAME.socket; a name containing '/' is a path used as is.
func Addr(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return "/tmp/" + name + ".socket"
}

// Server is a listening IPC front end.
type Server struct {
	srv  *ctl.Server
	a    *unixsock.Acceptor
	opts Options
	hub  *hub
	// unsubscribe ends the hub's subscription to the daemon's events.
	unsubscribe func()
}

// Serve listens on spec (resolve names with Addr first), serves IPC
// clients until srv closes, and passes the events srv publishes on to
// them.
func Serve(srv *ctl.Server, spec ctl.SocketSpec, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	h := newHub(srv)
	i := &Server{srv: srv, opts: opts, hub: h, unsubscribe: srv.Subscribe(h)}
	a, err := unixsock.Accept(srv.Inheritance(), srv.Logger(), "ipc", "unix", spec, opts.StreamOptions,
		func(ctx context.Context, c *net.UnixConn) { h.serveConn(ctx, c, opts) },
		func(c *net.UnixConn) {
			var b []byte
			b = appendErrorReply(b, "-1", fmt.Sprintf("too many connections (limit %d)", opts.MaxConns))
			c.Write(b)
		})
	if err != nil {
		i.unsubscribe()
		return nil, err
	}
	i.a = a
	if err := srv.Add(i); err != nil {
		i.Stop(context.Background(), false)
		return nil, fmt.Errorf("ipc: %w", err)
	}
	return i, nil
}

// Stop implements ctl.Frontend.
func (i *Server) Stop(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	i.unsubscribe()
	return i.a.Close(ctx, handoff)
}

// Addr returns the listening address.
func (i *Server) Addr() string { return i.a.Addr() }

// Active returns the number of connected clients of this listener.
func (i *Server) Active() int { return i.a.Active() }

// Front implements ctl.ConnCounter.
func (i *Server) Front() ctl.Front { return ctl.FrontIPC }

// Conns implements ctl.ConnCounter.
func (i *Server) Conns() (active, accepted uint64) {
	return uint64(i.a.Active()), i.a.Accepted()
}

// Broadcast sends msg as a log event to every IPC client of the daemon,
// including connections made with Connect: it is the daemon's
// ctl.Server.Publish. It never blocks on a slow client. A missing
// trailing newline is added, as nose's messages end with one.
func (i *Server) Broadcast(msg string) { i.srv.Publish(msg) }

// Writer returns an io.Writer whose every Write is broadcast as one log
// event, for hooking loggers (slog.NewTextHandler(srv.Writer(), nil)).
func (i *Server) Writer() io.Writer { return broadcastWriter{i.srv} }

// Dropped returns how many events were dropped for this listener's slow
// clients.
func (i *Server) Dropped() uint64 { return i.hub.dropped.Load() }

type broadcastWriter struct{ srv *ctl.Server }

func (w broadcastWriter) Write(p []byte) (int, error) {
	w.srv.Publish(string(p))
	return len(p), nil
}

// Connect is nose's --ipc-connect PATH: it dials out and serves that
// one connection like an accepted one (the events srv publishes reach
// it too). It returns nil when the peer closes the connection or srv
// closes, and ctx's error when ctx is cancelled. The connection is not
// handed over across a re-exec; the daemon connects again after it.
func Connect(ctx context.Context, srv *ctl.Server, path string, opts Options) error {
	opts = opts.withDefaults()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("ipc connect: %w", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := &outbound{path: path, c: nc, cancel: cancel, done: make(chan struct{})}
	if err := srv.Add(o); err != nil {
		nc.Close()
		return fmt.Errorf("ipc connect %s: %w", path, err)
	}
	defer srv.Remove(o)
	h := newHub(srv)
	defer srv.Subscribe(h)()
	srv.Logger().Info("connected", "frontend", "ipc", "addr", path)
	h.serveConn(cctx, nc, opts)
	close(o.done)
	return ctx.Err()
}

// outbound is the ctl.Frontend of a Connect connection, so that closing
// the ctl.Server ends it.
type outbound struct {
	path   string
	c      net.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func (o *outbound) Addr() string { return o.path }

func (o *outbound) Stop(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	o.cancel()
	select {
	case <-o.done:
	case <-ctx.Done():
		o.c.Close()
		<-o.done
	}
	return nil, nil
}

// hub is the set of live connections of one listener (or of one Connect)
// and the daemon's registry they run commands on. It receives the
// daemon's events as a ctl.Subscriber and encodes each once for all its
// connections.
type hub struct {
	r   *ctl.Registry
	log *slog.Logger

	mu      sync.RWMutex
	conns   map[*ipcConn]struct{}
	dropped atomic.Uint64
}

func newHub(srv *ctl.Server) *hub {
	return &hub{r: srv.Registry(), log: srv.Logger().With("frontend", "ipc"), conns: make(map[*ipcConn]struct{})}
}

// Event implements ctl.Subscriber: msg goes to every connection as a log
// event, dropped for those whose queue is full.
func (h *hub) Event(msg string) {
	line := appendEvent(nil, msg)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.conns {
		c.putEvent(line)
	}
}

func (h *hub) add(c *ipcConn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
}

func (h *hub) del(c *ipcConn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// serveConn serves one connection until EOF, exit, a write failure or
// ctx's end, then flushes what is queued and closes it.
func (h *hub) serveConn(ctx context.Context, nc net.Conn, opts Options) {
	log := h.log
	q := newIPCQueue(opts.QueueBytes, &h.dropped, log)
	h.add(q.conn)
	wdone := make(chan error, 1)
	go func() {
		err := q.writeTo(nc)
		if err != nil {
			// Stop reading: nobody will see the replies.
			nc.SetReadDeadline(time.Unix(1, 0))
		}
		wdone <- err
	}()
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Unix(1, 0)) })
	sess := &ipcSession{r: h.r, q: q, log: log, maxLine: opts.MaxLine}
	err := sess.serve(ctx, nc)
	stop()
	h.del(q.conn)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
		log.Info("connection read failed", "err", err)
	}
	nc.SetWriteDeadline(time.Now().Add(ipcFlushTimeout))
	q.finish()
	if werr := <-wdone; werr != nil && !errors.Is(werr, net.ErrClosed) {
		log.Info("connection write failed", "err", werr)
	}
	drainClose(nc)
}

// Bounds of drainClose's wait for the peer.
const (
	drainTimeout = 200 * time.Millisecond
	drainMax     = 1 << 20
)

// drainClose closes nc so that the peer reads every reply and then end
// of file. Closing a socket with input unread (the lines a client sent
// after exit) makes the peer's next read fail with a reset instead: so
// the write side is shut first, which the peer reads as end of file,
// and what is left to read is discarded, within bounds, before the
// close.
func drainClose(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		nc.SetReadDeadline(time.Now().Add(drainTimeout))
		io.Copy(io.Discard, io.LimitReader(nc, drainMax))
	}
	nc.Close()
}

// ipcConn identifies a connection in the hub; it is the queue's handle.
type ipcConn struct{ q *ipcQueue }

func (c *ipcConn) putEvent(line []byte) { c.q.put(nil, line, ipcEvent) }

type ipcKind int

const (
	ipcReply  ipcKind = iota // never dropped; waits for room
	ipcOutput                // command output: waits for room unless its ctx ends
	ipcEvent                 // broadcast: dropped when there is no room
)

// ipcQueue is a connection's outgoing byte queue. Producers append whole
// lines under the lock, so events never split another line; one writer
// goroutine swaps the buffer out and writes it, which batches pipelined
// replies into few syscalls.
type ipcQueue struct {
	conn    *ipcConn
	limit   int
	total   *atomic.Uint64
	log     *slog.Logger
	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte
	spare   []byte
	done    bool // input ended: the writer drains and exits
	broken  bool // the writer failed: everything is dropped
	drops   uint64
	dropped bool // in a run of drops, logged once at its start and end
}

func newIPCQueue(limit int, total *atomic.Uint64, log *slog.Logger) *ipcQueue {
	q := &ipcQueue{limit: limit, total: total, log: log}
	q.cond.L = &q.mu
	q.conn = &ipcConn{q: q}
	return q
}

// errIPCGone is returned to a command writing to a connection that can no
// longer take output.
var errIPCGone = errors.New("ipc: client gone or not reading")

// put queues one line. It reports whether the line was queued.
func (q *ipcQueue) put(ctx context.Context, line []byte, kind ipcKind) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken || (q.done && kind == ipcEvent) {
		return false
	}
	if len(q.buf) >= q.limit {
		if kind == ipcEvent {
			q.drop()
			return false
		}
		if kind == ipcOutput && ctx != nil {
			stop := context.AfterFunc(ctx, func() {
				q.mu.Lock()
				q.cond.Broadcast()
				q.mu.Unlock()
			})
			defer stop()
		}
		for len(q.buf) >= q.limit && !q.broken {
			if kind == ipcOutput && ctx != nil && ctx.Err() != nil {
				q.drop()
				return false
			}
			q.cond.Wait()
		}
		if q.broken {
			return false
		}
	}
	if q.dropped {
		q.dropped = false
		q.log.Warn("slow client reads again; events were dropped", "dropped", q.drops)
	}
	wake := len(q.buf) == 0
	q.buf = append(q.buf, line...)
	if wake {
		q.cond.Broadcast()
	}
	return true
}

func (q *ipcQueue) drop() {
	q.drops++
	q.total.Add(1)
	if !q.dropped {
		q.dropped = true
		q.log.Warn("slow client: output queue full, dropping events for it", "limit", q.limit)
	}
}

// finish marks the end of input: the writer drains the queue and exits.
func (q *ipcQueue) finish() {
	q.mu.Lock()
	q.done = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// writeTo writes queued output to w until finish, then drains.
func (q *ipcQueue) writeTo(w io.Writer) error {
	for {
		q.mu.Lock()
		for len(q.buf) == 0 && !q.done {
			q.cond.Wait()
		}
		if len(q.buf) == 0 {
			q.mu.Unlock()
			return nil
		}
		out := q.buf
		q.buf, q.spare = q.spare[:0], nil
		q.cond.Broadcast() // room for waiting producers
		q.mu.Unlock()

		_, err := w.Write(out)

		q.mu.Lock()
		// Keep the buffer for the next swap unless a burst grew it: an
		// idle connection should not pin a large buffer.
		if cap(out) <= 64<<10 {
			q.spare = out[:0]
		}
		if err != nil {
			q.broken = true
			q.buf = nil
			q.cond.Broadcast()
		}
		q.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// take returns and clears what is queued (for tests and fuzzing, where no
// writer runs).
func (q *ipcQueue) take() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.buf
	q.buf = nil
	return b
}

// ipcOut is a command's Out: each Write becomes one log event to the
// calling client.
type ipcOut struct {
	ctx context.Context
	q   *ipcQueue
}

func (o ipcOut) Write(p []byte) (int, error) {
	if !o.q.put(o.ctx, appendEvent(nil, string(p)), ipcOutput) {
		return 0, errIPCGone
	}
	return len(p), nil
}

// ipcSession is the request side of one connection.
type ipcSession struct {
	r       *ctl.Registry
	q       *ipcQueue
	log     *slog.Logger
	maxLine int
	scratch []byte
	out     io.Writer // Out of non-streaming commands, made once
	stream  *ipcStream
	quit    bool
}

// ipcStream is a running streaming command.
type ipcStream struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// serve reads request lines from r until EOF, exit or a read error.
func (ss *ipcSession) serve(ctx context.Context, r io.Reader) error {
	defer ss.stopStream()
	// +2 leaves room for "\r\n" after a line of exactly maxLine bytes.
	br := bufio.NewReaderSize(r, ss.maxLine+2)
	for !ss.quit {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			ss.stopStream()
			ss.tooLong(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return ignoreEOF(err)
			}
			continue
		}
		if len(line) > 0 {
			ss.handleLine(ctx, line)
		}
		if err != nil {
			return ignoreEOF(err)
		}
	}
	return nil
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// tooLong answers an over-long line: as a JSON request when it starts
// like one, else as a text-form line.
func (ss *ipcSession) tooLong(start []byte) {
	msg := fmt.Sprintf("line too long (max %d bytes)", ss.maxLine)
	ss.log.Warn("bad request", "err", msg)
	i := 0
	for i < len(start) && isSpace(start[i]) {
		i++
	}
	ss.fail(i < len(start) && start[i] == '{', "-1", msg)
}

// stopStream cancels a running streaming command and waits until its
// reply is queued.
func (ss *ipcSession) stopStream() {
	if ss.stream != nil {
		ss.stream.cancel()
		<-ss.stream.done
		ss.stream = nil
	}
}

func (ss *ipcSession) reply(b []byte) {
	ss.q.put(nil, b, ipcReply)
	ss.scratch = b[:0]
}

// fail reports an error as nose does: a log event to the client, and for
// a JSON request a reply with success:false (and the text under "error").
func (ss *ipcSession) fail(json bool, id, msg string) {
	ss.failAs(ctl.Error, json, id, msg)
}

// failAs is fail for a request counted under code: an unknown command
// is counted as unsupported, though nose's reply is the same error.
func (ss *ipcSession) failAs(code ctl.Code, json bool, id, msg string) {
	ss.r.Count(ctl.FrontIPC, code)
	ss.q.put(nil, appendEvent(nil, "error: "+msg), ipcReply)
	if json {
		ss.reply(appendErrorReply(ss.scratch[:0], id, msg))
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// handleLine runs one request line. A streaming command still running
// from the previous line is cancelled first, so replies keep their order.
func (ss *ipcSession) handleLine(ctx context.Context, line []byte) {
	line = bytes.TrimRight(line, "\n")
	line = bytes.TrimSuffix(line, []byte("\r"))
	i := 0
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	if i == len(line) {
		return
	}
	ss.stopStream()
	if len(line) > ss.maxLine {
		ss.tooLong(line)
		return
	}
	if line[i] == '{' {
		ss.handleJSON(ctx, line[i:])
		return
	}
	ss.handleText(ctx, line)
}

// ipcBuiltin returns the commands this front end adds when the registry
// has none of that name: help and exit.
func (ss *ipcSession) ipcBuiltin(name string) *ctl.Command {
	switch name {
	case "help":
		return &ctl.Command{
			Name:    "help",
			Comment: "List commands",
			Params:  []ctl.Param{HelpParam},
			Handler: func(_ context.Context, call *ctl.Call) ctl.Result {
				return ctl.OK(Help(ss.helpCommands(), call.Args.String("command"), false), nil)
			},
		}
	case "exit":
		return &ctl.Command{
			Name:    "exit",
			Comment: "close this connection",
			Handler: func(context.Context, *ctl.Call) ctl.Result {
				ss.quit = true
				return ctl.Result{}
			},
		}
	}
	return nil
}

// HelpParam is the parameter of nose's help command, for daemons that
// register their own help.
var HelpParam = ctl.Param{Name: "command", Type: ctl.String, Default: "all", Ranged: true, Max: 256,
	Help: "show help for specific command"}

// helpCommands returns the commands help lists, the front end's own
// included.
func (ss *ipcSession) helpCommands() []*ctl.Command {
	cmds := ss.r.Commands()
	for _, n := range []string{"exit", "help"} {
		if _, ok := ss.r.Lookup(n); !ok {
			cmds = append(cmds, ss.ipcBuiltin(n))
		}
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return cmds
}

func (ss *ipcSession) lookup(name string) (*ctl.Command, bool) {
	if c, ok := ss.r.Lookup(name); ok {
		return c, true
	}
	if c := ss.ipcBuiltin(name); c != nil {
		return c, true
	}
	return nil, false
}

// handleJSON runs {"command":"name","id":N,"param":value,...}.
func (ss *ipcSession) handleJSON(ctx context.Context, line []byte) {
	req, err := parseIPCRequest(line)
	if err != nil {
		msg := "invalid JSON: " + err.Error()
		ss.log.Warn("bad request", "err", msg)
		ss.fail(true, "-1", msg)
		return
	}
	id := ipcID(req.id)
	var name string
	if req.cmd != nil {
		v, err := decodeJSONValue(req.cmd)
		s, isStr := v.(string)
		if err != nil || !isStr {
			msg := fmt.Sprintf("'command' must be a string, got %s", jsonenc.Kind(v))
			ss.log.Warn("bad request", "err", msg)
			ss.fail(true, id, msg)
			return
		}
		name = s
	}
	if name == "" {
		ss.log.Warn("bad request", "err", "no command")
		ss.fail(true, id, "missing command name")
		return
	}
	cmd, ok := ss.lookup(name)
	if !ok {
		ss.log.Info("unknown command", "command", clip(name, 64))
		ss.failAs(ctl.Unsupported, true, id, fmt.Sprintf("command %s not found", clip(name, 64)))
		return
	}
	// nose stores every JSON number it reads for an integer parameter
	// as a double converted to an integer: "address":1.9 is 1.
	in := ctl.Input{Named: req.named, TruncateReals: true}
	if !cmd.AnyArgs {
		// nose reads only the keys it has parameters for.
		for k := range in.Named {
			if cmd.Param(k) == nil {
				ss.log.Debug("ignoring key", "command", cmd.Name, "key", clip(k, 64))
				delete(in.Named, k)
			}
		}
	}
	ss.run(ctx, cmd, in, id, false)
}

// ipcID returns the reply id for a request's raw id as nose computes it:
// the number truncated towards zero (nose reads it as a double and
// stores it in an integer), -1 for a missing id or anything that is not a
// number. Integers are kept exactly, beyond a double's 53 bits too; a
// number outside the 64-bit range also gives -1, where C's conversion
// is undefined.
func ipcID(raw []byte) string {
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return "-1"
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return strconv.FormatInt(n, 10)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || f >= 0x1p63 || f < -0x1p63 {
		return "-1"
	}
	return strconv.FormatInt(int64(f), 10)
}

// handleText runs a nose text-form line: "cmd args", "cmd --name=value",
// "cmd --help". Its output, errors included, is log events only.
func (ss *ipcSession) handleText(ctx context.Context, line []byte) {
	name, args, comment, err := ParseLine(string(line))
	if err != nil {
		ss.log.Warn("bad request", "err", err)
		ss.fail(false, "-1", err.Error())
		return
	}
	if comment {
		return
	}
	cmd, ok := ss.lookup(name)
	if !ok {
		ss.log.Info("unknown command", "command", clip(name, 64))
		ss.failAs(ctl.Unsupported, false, "-1", fmt.Sprintf("command %s not found", clip(name, 64)))
		return
	}
	in, help, err := BindWords(cmd, args)
	if err != nil {
		ss.fail(false, "-1", err.Error())
		return
	}
	if help {
		ss.textLines(Help([]*ctl.Command{cmd}, cmd.Name, true))
		return
	}
	ss.run(ctx, cmd, in, "-1", true)
}

// run runs cmd. Streaming commands run in their own goroutine until the
// next line arrives; everything else runs here, one at a time.
func (ss *ipcSession) run(ctx context.Context, cmd *ctl.Command, in ctl.Input, id string, text bool) {
	in.Front = ctl.FrontIPC
	if cmd.Stream {
		sctx, cancel := context.WithCancel(ctx)
		st := &ipcStream{cancel: cancel, done: make(chan struct{})}
		ss.stream = st
		go func() {
			defer close(st.done)
			defer cancel()
			res := ss.r.Run(sctx, cmd, in, ipcOut{ctx: sctx, q: ss.q})
			if b := ss.render(nil, id, res, text); len(b) > 0 {
				ss.q.put(nil, b, ipcReply)
			}
		}()
		return
	}
	if ss.out == nil {
		ss.out = ipcOut{ctx: ctx, q: ss.q}
	}
	res := ss.r.Run(ctx, cmd, in, ss.out)
	if b := ss.render(ss.scratch[:0], id, res, text); len(b) > 0 {
		ss.reply(b)
	}
}

// render sends a result's log events and returns its reply line (none
// for the text form). The events go out first, so that they come before
// the reply.
func (ss *ipcSession) render(b []byte, id string, res ctl.Result, text bool) []byte {
	if res.Code != ctl.Success {
		msg := res.Text
		if msg == "" {
			msg = fmt.Sprintf("command failed (result %d)", int(res.Code))
		}
		ss.log.Debug("command failed", "code", int(res.Code), "text", msg)
		ss.q.put(nil, appendEvent(nil, "error: "+msg), ipcReply)
		if text {
			return nil
		}
		return appendErrorReply(b, id, msg)
	}
	if text {
		if res.Text != "" {
			ss.textLines(res.Text)
			return nil
		}
		if res.Args != nil {
			lines, err := textArgs(res.Args)
			if err != nil {
				ss.encodeFailed(id, err, true)
				return nil
			}
			for _, l := range lines {
				ss.q.put(nil, appendEvent(nil, l), ipcReply)
			}
		}
		return nil
	}
	if res.Args == nil {
		if res.Text != "" {
			ss.textLines(res.Text)
		}
		return appendOK(b, id)
	}
	out, err := appendResult(b, id, res)
	if err != nil {
		return ss.encodeFailed(id, err, false)
	}
	return out
}

func (ss *ipcSession) encodeFailed(id string, err error, text bool) []byte {
	ss.log.Error("cannot encode command result", "err", err)
	msg := "internal error: cannot encode result: " + err.Error()
	ss.q.put(nil, appendEvent(nil, "error: "+msg), ipcReply)
	if text {
		return nil
	}
	return appendErrorReply(nil, id, msg)
}

// textLines sends each line of s as a log event to this client.
func (ss *ipcSession) textLines(s string) {
	for _, l := range strings.SplitAfter(strings.TrimRight(s, "\n")+"\n", "\n") {
		if l != "" {
			ss.q.put(nil, appendEvent(nil, l), ipcReply)
		}
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// ipcRequest is a JSON request line split into its parts.
type ipcRequest struct {
	id, cmd []byte // raw values; nil when absent
	named   map[string]any
}

// parseIPCRequest splits a JSON object line into id, command and the
// named parameters. encoding/json checks the syntax (json.Valid is its
// fast scanner); splitting the already valid object by hand then avoids
// the reflection of a full Unmarshal, which dominated the per-request
// cost. As with Unmarshal, the last of duplicate keys wins.
func parseIPCRequest(line []byte) (ipcRequest, error) {
	var r ipcRequest
	if !json.Valid(line) {
		var v any
		err := json.Unmarshal(line, &v) // for its error text
		if err == nil {
			err = errors.New("not a JSON value")
		}
		return r, err
	}
	i := skipJSONSpace(line, 0)
	if line[i] != '{' {
		return r, errors.New("expected a JSON object")
	}
	i++
	for {
		i = skipJSONSpace(line, i)
		switch line[i] {
		case '}':
			return r, nil
		case ',':
			i++
			continue
		}
		kend := skipJSONString(line, i)
		rawKey := line[i:kend]
		i = skipJSONSpace(line, kend) + 1 // past ':'
		i = skipJSONSpace(line, i)
		vend := skipJSONValue(line, i)
		raw := line[i:vend]
		i = vend
		switch {
		case string(rawKey) == `"id"`:
			r.id = raw
		case string(rawKey) == `"command"`:
			r.cmd = raw
		default:
			key, err := decodeJSONValue(rawKey)
			if err != nil {
				return r, err
			}
			k := key.(string)
			if k == "id" || k == "command" { // spelled with escapes
				if k == "id" {
					r.id = raw
				} else {
					r.cmd = raw
				}
				continue
			}
			v, err := decodeJSONValue(raw)
			if err != nil {
				return r, fmt.Errorf("value of '%s': %w", k, err)
			}
			if r.named == nil {
				r.named = make(map[string]any)
			}
			r.named[k] = v
		}
	}
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipJSONString returns the index after the string starting at b[i],
// which must be valid JSON.
func skipJSONString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipJSONValue returns the index after the valid JSON value at b[i].
func skipJSONValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipJSONString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipJSONString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n' {
		i++
	}
	return i
}

// decodeJSONValue decodes one JSON value with numbers kept as
// json.Number. Strings and numbers, the common case, avoid a Decoder.
func decodeJSONValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("empty value")
	}
	switch c := raw[0]; {
	case c == '"':
		if len(raw) >= 2 && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
			return string(raw[1 : len(raw)-1]), nil
		}
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case c == '-' || (c >= '0' && c <= '9'):
		return json.Number(raw), nil
	case bytes.Equal(raw, []byte("true")):
		return true, nil
	case bytes.Equal(raw, []byte("false")):
		return false, nil
	case bytes.Equal(raw, []byte("null")):
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// reservedIPCKeys are the reply keys a flattened map result may not
// override; such keys are sent with a "result_" prefix instead.
var reservedIPCKeys = map[string]bool{"id": true, "success": true, "error": true, "text": true, "type": true}

// appendResult encodes a reply: id first, then the arguments (a map, or
// anything that encodes as a JSON object, is flattened with sorted keys;
// anything else goes under "result") and success last. The text is not
// part of it: render sends it as log events when there are no
// arguments. A failure carries only id, error and success.
func appendResult(b []byte, id string, res ctl.Result) ([]byte, error) {
	if res.Code != ctl.Success {
		msg := res.Text
		if msg == "" {
			msg = fmt.Sprintf("command failed (result %d)", int(res.Code))
		}
		return appendErrorReply(b, id, msg), nil
	}
	b = append(b, `{"id":`...)
	b = append(b, id...)
	if res.Args != nil {
		var err error
		if b, err = appendArgs(b, res.Args); err != nil {
			return nil, err
		}
	}
	return append(b, ",\"success\":true}\n"...), nil
}

func appendArgs(b []byte, args any) ([]byte, error) {
	m, ok := args.(map[string]any)
	if !ok {
		enc, err := encodeJSON(args)
		if err != nil {
			return nil, err
		}
		if len(enc) == 0 || enc[0] != '{' {
			b = append(b, `,"result":`...)
			return append(b, enc...), nil
		}
		// Typed maps and structs: flatten them like a map.
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(enc, &raw); err != nil {
			return nil, err
		}
		m = make(map[string]any, len(raw))
		for k, v := range raw {
			m[k] = v
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if reservedIPCKeys[k] {
			name = "result_" + k
			if _, clash := m[name]; clash {
				continue // the caller's own "result_id" wins
			}
		}
		b = append(b, ',')
		b = jsonenc.AppendString(b, name)
		b = append(b, ':')
		var err error
		if b, err = appendJSONValue(b, m[k]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func encodeJSON(v any) ([]byte, error) {
	return appendJSONValue(nil, v)
}

// appendJSONValue encodes v in nose's compact layout.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	return jsonenc.Append(b, v, jsonenc.Compact)
}

// appendErrorReply encodes {"id":N,"error":"msg","success":false}.
func appendErrorReply(b []byte, id, msg string) []byte {
	b = append(b, `{"id":`...)
	b = append(b, id...)
	b = append(b, `,"error":`...)
	b = jsonenc.AppendString(b, msg)
	return append(b, ",\"success\":false}\n"...)
}

// appendOK encodes a bare success reply.
func appendOK(b []byte, id string) []byte {
	b = append(b, `{"id":`...)
	b = append(b, id...)
	return append(b, ",\"success\":true}\n"...)
}

// appendEvent encodes {"type":"log","msg":"…\n"}.
func appendEvent(b []byte, msg string) []byte {
	b = append(b, `{"type":"log","msg":`...)
	if !strings.HasSuffix(msg, "\n") {
		b = jsonenc.AppendString(b, msg+"\n")
	} else {
		b = jsonenc.AppendString(b, msg)
	}
	return append(b, "}\n"...)
}

// textArgs renders a result's arguments for a person: a map as sorted
// "key: value" lines, a list one element per line, a scalar as itself;
// nested values as JSON.
func textArgs(args any) ([]string, error) {
	one := func(v any) (string, error) {
		if s, ok := v.(string); ok {
			return s, nil
		}
		b, err := appendJSONValue(nil, v)
		return string(b), err
	}
	enc, err := encodeJSON(args)
	if err != nil {
		return nil, err
	}
	var lines []string
	switch enc[0] {
	case '{':
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(enc))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s, err := one(m[k])
			if err != nil {
				return nil, err
			}
			lines = append(lines, k+": "+s)
		}
	case '[':
		var l []any
		d := json.NewDecoder(bytes.NewReader(enc))
		d.UseNumber()
		if err := d.Decode(&l); err != nil {
			return nil, err
		}
		for _, e := range l {
			s, err := one(e)
			if err != nil {
				return nil, err
			}
			lines = append(lines, s)
		}
	default:
		s, err := one(args)
		if err != nil {
			return nil, err
		}
		lines = append(lines, s)
	}
	return lines, nil
}
