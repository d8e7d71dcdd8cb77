package dgram

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxLen is the longest datagram command sfptpd accepts (it reads
// into a 128-byte buffer with room for the terminating NUL). Longer
// datagrams are rejected whole rather than truncated, because running a
// truncated command line could run a different command.
const MaxLen = 127

// DefaultQueue is the default length of the in-process queue
// between the datagram reader and the command executor.
const DefaultQueue = 1024

// dgramReadBuf is the receive buffer size. It is far larger than
// MaxLen so that an over-long datagram is seen at its real length;
// MSG_TRUNC catches anything larger still.
const dgramReadBuf = 64 << 10

// dgramOutputMax bounds the command output kept for the log line.
const dgramOutputMax = 4 << 10

// Options configures a datagram front end.
type Options struct {
	// QueueLen bounds the commands read from the socket but not yet run;
	// 0 means DefaultQueue. The queue lets a slow command run
	// without clients' writes blocking; when it is full the reader waits
	// (and counts a stall) instead of dropping a command.
	QueueLen int
	// Ready, if set, holds the commands read until it is closed: a daemon
	// binds its socket early (to find another instance still serving it)
	// but can only carry out commands once it runs, and a datagram has no
	// reply through which a refused one could be sent again. Commands
	// still held when the front end closes are dropped and counted.
	Ready <-chan struct{}
}

// Stats are the datagram front end's counters.
type Stats struct {
	// Received counts every datagram read from the socket.
	Received uint64 `json:"received"`
	// Run counts commands that ran and returned success.
	Run uint64 `json:"run"`
	// Failed counts unknown commands, parameter errors, streaming
	// commands and handler failures.
	Failed uint64 `json:"failed"`
	// Rejected counts empty and over-long datagrams.
	Rejected uint64 `json:"rejected"`
	// Stalls counts the times the in-process queue was full and reading
	// paused until a command completed.
	Stalls uint64 `json:"stalls"`
	// Dropped counts commands read but not run because the front end
	// closed (its close deadline passed) before their turn.
	Dropped uint64 `json:"dropped"`
}

// Server is sfptpd's control socket: an AF_UNIX SOCK_DGRAM socket
// taking one "cmd[=p1[,p2...]]" command per datagram, with no reply.
// Every outcome is logged.
type Server struct {
	r    *ctl.Registry
	log  *slog.Logger
	conn *net.UnixConn
	sock *unixsock.Socket

	queue chan string
	// ready holds the executor (Options.Ready); stopping is closed when
	// Stop begins, so that a front end closed before it was ready drops
	// what it holds instead of waiting.
	ready    <-chan struct{}
	stopping chan struct{}

	ctx    context.Context
	cancel context.CancelFunc

	readerDone chan struct{}
	execDone   chan struct{}
	closeOnce  sync.Once
	closeRes   *unixsock.Files
	closeErr   error

	received, run, failed, rejected, stalls, dropped atomic.Uint64
}

// Serve starts the datagram front end on spec (a path, or "@name").
// It adopts an inherited socket when one matches, so datagrams queued in
// the kernel during a re-exec are read by the new image.
func Serve(srv *ctl.Server, spec ctl.SocketSpec, opts Options) (*Server, error) {
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueue
	}
	conn, sock, err := unixsock.ListenDgram(srv.Inheritance(), srv.Logger(), spec)
	if err != nil {
		return nil, fmt.Errorf("dgram: %w", err)
	}
	d := &Server{
		r:          srv.Registry(),
		log:        srv.Logger().With("frontend", "dgram"),
		conn:       conn,
		sock:       sock,
		queue:      make(chan string, opts.QueueLen),
		ready:      opts.Ready,
		stopping:   make(chan struct{}),
		readerDone: make(chan struct{}),
		execDone:   make(chan struct{}),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if err := srv.Add(d); err != nil {
		conn.Close()
		sock.Remove()
		d.cancel()
		return nil, fmt.Errorf("dgram: %w", err)
	}
	go d.read()
	go d.execute()
	srv.Logger().Info("listening", "frontend", "dgram", "addr", spec.Addr)
	return d, nil
}

// Addr returns the socket address.
func (d *Server) Addr() string { return d.sock.Addr }

// Stats returns the current counters.
func (d *Server) Stats() Stats {
	return Stats{
		Received: d.received.Load(),
		Run:      d.run.Load(),
		Failed:   d.failed.Load(),
		Rejected: d.rejected.Load(),
		Stalls:   d.stalls.Load(),
		Dropped:  d.dropped.Load(),
	}
}

// Close stops the front end, runs the commands already read (within
// ctx's deadline) and removes the socket file it created.
func (d *Server) Close(ctx context.Context) error {
	_, err := d.Stop(ctx, false)
	return err
}

// read drains the kernel queue as fast as datagrams arrive. It never
// runs commands itself: a slow command must not make clients' writes
// block.
func (d *Server) read() {
	defer close(d.readerDone)
	defer close(d.queue)
	buf := make([]byte, dgramReadBuf)
	var lastStallLog time.Time
	var backoff time.Duration
	for {
		n, _, flags, _, err := d.conn.ReadMsgUnix(buf, nil)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if backoff < time.Second {
				backoff = max(2*backoff, 5*time.Millisecond)
			}
			d.log.Error("control: receive failed; retrying", "addr", d.sock.Addr, "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		d.received.Add(1)
		if flags&syscall.MSG_TRUNC != 0 || n > MaxLen {
			if flags&syscall.MSG_TRUNC != 0 {
				d.log.Warn("control: over-long datagram rejected", "len", fmt.Sprintf("more than %d", n), "max", MaxLen)
			} else {
				d.log.Warn("control: over-long datagram rejected", "len", n, "max", MaxLen)
			}
			d.rejected.Add(1)
			continue
		}
		line := string(buf[:n])
		select {
		case d.queue <- line:
			continue
		default:
		}
		// The queue is full: wait for the executor rather than drop a
		// command. The kernel queue then fills and clients' writes block,
		// which is what sfptpd's clients expect; losing a stepclocks
		// would be worse. One log line per second at most.
		total := d.stalls.Add(1)
		if now := time.Now(); now.Sub(lastStallLog) >= time.Second {
			lastStallLog = now
			d.log.Warn("control: command queue full; reading paused until commands complete", "queue", cap(d.queue), "stalls_total", total)
		}
		select {
		case d.queue <- line:
		case <-d.ctx.Done():
			d.dropped.Add(1)
			d.log.Warn("control: front end closing; command not run", "line", line)
			return
		}
	}
}

// execute runs queued commands one at a time, in arrival order.
func (d *Server) execute() {
	defer close(d.execDone)
	if d.ready != nil {
		select {
		case <-d.ready:
		case <-d.stopping:
			for line := range d.queue {
				d.dropped.Add(1)
				d.log.Warn("control: front end closing before the daemon was ready; command not run", "line", line)
			}
			return
		}
	}
	for line := range d.queue {
		if d.ctx.Err() != nil {
			d.dropped.Add(1)
			d.log.Warn("control: front end closing; queued command not run", "line", line)
			continue
		}
		d.runLine(line)
	}
}

// Parse splits one datagram into a command name and its positional
// parameters: "cmd", "cmd=p1" or "cmd=p1,p2,...". It splits at the first
// '=' and then at every ','; an empty parameter part ("cmd=") means no
// parameters.
//
// Before splitting, the datagram ends at its first NUL byte, because
// sfptpd reads a datagram as a C string and never sees what follows a
// NUL. Trailing white space (space, tab, CR, LF, VT, FF) is then removed:
// sfptpd compares the text as it is, so "logrotate\n" from
// `echo logrotate | socat` is an unknown command there, but no command or
// parameter sfptpd accepts ends in white space, so dropping it makes
// such senders work without changing the meaning of any datagram sfptpd
// accepts. Leading and inner white space is kept: " logrotate" stays
// unknown, as in sfptpd.
//
// A datagram over MaxLen bytes, or one with nothing left once
// trimmed, is an error. An empty name ("=a") is returned as such and
// becomes an unknown command, as in sfptpd.
func Parse(b []byte) (name string, params []string, err error) {
	if len(b) > MaxLen {
		return "", nil, fmt.Errorf("datagram of %d bytes is over the limit of %d", len(b), MaxLen)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimRight(b, " \t\r\n\v\f")
	if len(b) == 0 {
		return "", nil, errors.New("empty datagram")
	}
	s := string(b)
	name, rest, hasParams := strings.Cut(s, "=")
	if hasParams && rest != "" {
		params = strings.Split(rest, ",")
	}
	return name, params, nil
}

// runLine parses and runs one datagram's command and logs the outcome.
func (d *Server) runLine(line string) {
	name, params, err := Parse([]byte(line))
	if err != nil {
		d.log.Warn("control: "+err.Error()+"; ignored", "line", line)
		d.r.Count(ctl.FrontDgram, ctl.Error)
		d.rejected.Add(1)
		return
	}
	c, ok := d.r.Lookup(name)
	if !ok {
		// The exact text sfptpd logs, so that log watchers keep working,
		// with the whole datagram as an attribute.
		d.log.Warn(fmt.Sprintf("control: unknown command %s received", name), "line", line)
		d.r.Count(ctl.FrontDgram, ctl.Unsupported)
		d.failed.Add(1)
		return
	}
	if c.Stream {
		d.log.Error("control: command streams its output and cannot run over the datagram socket; use the console", "command", name)
		d.r.Count(ctl.FrontDgram, ctl.Unsupported)
		d.failed.Add(1)
		return
	}
	if len(c.Params) == 0 && !c.AnyArgs && len(params) > 0 {
		// sfptpd matches parameterless commands on the part before '='
		// ("exit=now" exits), so extra parameters are not an error here.
		d.log.Debug("control: ignoring parameters of a command that takes none", "command", name, "params", params)
		params = nil
	}
	out := &ctl.OutputBuffer{Max: dgramOutputMax}
	res := d.r.Run(d.ctx, c, ctl.Input{Positional: params, Front: ctl.FrontDgram}, out)
	attrs := []any{"command", name, "text", res.Text}
	if out.Len() > 0 {
		attrs = append(attrs, "output", out.String())
	}
	if res.Code == ctl.Success {
		d.log.Info("control: command run", attrs...)
		d.run.Add(1)
		return
	}
	attrs = append(attrs, "result", int(res.Code))
	d.log.Warn("control: command failed", attrs...)
	d.failed.Add(1)
}

// Stop implements ctl.Frontend. The socket is closed (after a dup when
// handing off, so datagrams still in the kernel queue wait there for the
// next image); commands already read are run within ctx's deadline and
// dropped after it.
func (d *Server) Stop(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	d.closeOnce.Do(func() {
		close(d.stopping)
		var hf *unixsock.Files
		if handoff {
			f, err := d.conn.File()
			if err != nil {
				d.closeErr = fmt.Errorf("dgram handoff: %w", err)
			} else {
				hf = &unixsock.Files{Sock: f, Owned: d.sock.Created}
			}
		}
		d.conn.Close()
		// The executor ends once the reader has closed the queue; past
		// ctx's deadline, commands still queued are abandoned (and
		// counted) and a reader waiting on the full queue gives up.
		select {
		case <-d.execDone:
		case <-ctx.Done():
			d.cancel()
		}
		<-d.readerDone
		<-d.execDone
		d.cancel()
		if !handoff {
			d.sock.Remove()
		}
		d.closeRes = hf
	})
	return d.closeRes, d.closeErr
}
