package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tickbox-fw/tickbox/internal/unixsock"
	"github.com/tickbox-fw/tickbox/services/ctl"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Console defaults.
const (
	// DefaultMaxLine bounds one console input line, as nose bounds
	// its IPC lines.
	DefaultMaxLine = 4096
	// DefaultWriteTimeout is how long one write to a console client
	// may block before the client is considered gone. Without it a client
	// that stops reading would pin a streaming command forever.
	DefaultWriteTimeout = 10 * time.Second
)

// gone's texts, byte for byte.
const (
	// consoleUnknown is the reply to an unknown command.
	consoleUnknown = "Unknown command, try: ?\n"
	// consoleErrorPrefix starts an error line: gone prints a failed
	// command's error with fmt.Fprintln(conn, "Error: ", err), which puts
	// two spaces after the colon.
	consoleErrorPrefix = "Error:  "
	// consoleHelpHeader heads the "?" listing.
	consoleHelpHeader = "---- commands --------------------------------------------------------------\n"
)

// Options configures a console front end. The zero value behaves
// as gone's ctrl server: words split on whitespace, output exactly what
// the command writes.
type Options struct {
	ctl.StreamOptions
	// MaxLine bounds an input line in bytes; 0 means
	// DefaultMaxLine. Longer lines get an error and are skipped.
	MaxLine int
	// WriteTimeout bounds one write to a client; 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// Quoting reads lines as the IPC text form does (Tokenize): quotes
	// group words, backslashes escape and an unquoted '#' starts a
	// comment. Off, a line splits on whitespace alone, as in gone, so
	// that "echo it's #1" reaches the command as typed.
	Quoting bool
	// ShowArgs prints a result's structured arguments as "key: value"
	// lines after its text. Off, they are printed only for a command
	// that produced no text at all (status-get, config-get), because
	// there they are the whole answer.
	ShowArgs bool
}

// Server is a console that a user of One-com/gone's ctrl server
// drives as that: whitespace-split command lines, "?" for gone's command
// table, "q" to quit, "! cmd" to run one command and half-close, gone's
// "Error:  text" lines, output that is what the command writes,
// streaming commands that run until the next line, and persistent
// commands that survive an in-place re-exec.
type Server struct {
	r    *ctl.Registry
	a    *unixsock.Acceptor
	opts Options
	log  *slog.Logger

	// handoff is closed when a re-exec asks the sessions to stop without
	// closing their connections.
	handoff     chan struct{}
	handoffOnce sync.Once

	adopted sync.WaitGroup // sessions resumed from a previous image

	mu       sync.Mutex
	sessions map[*consoleSession]struct{}
	handed   []unixsock.HandoffConn
}

// Serve starts a console on spec. Connections handed over by the
// image that re-executed into this one are resumed first: their unread
// input is processed and their persistent command is replayed.
func Serve(srv *ctl.Server, spec ctl.SocketSpec, opts Options) (*Server, error) {
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	cs := &Server{
		r: srv.Registry(), opts: opts, log: srv.Logger().With("frontend", "console"),
		handoff:  make(chan struct{}),
		sessions: make(map[*consoleSession]struct{}),
	}
	limit := opts.MaxConns
	if limit <= 0 {
		limit = ctl.DefaultMaxConns
	}
	a, err := unixsock.Accept(srv.Inheritance(), srv.Logger(), "console", "unix", spec, opts.StreamOptions,
		func(ctx context.Context, c *net.UnixConn) { cs.serve(ctx, c, "", nil) },
		func(c *net.UnixConn) {
			fmt.Fprintf(c, "%stoo many connections (limit %d)\n", consoleErrorPrefix, limit)
		})
	if err != nil {
		return nil, err
	}
	cs.a = a
	for _, h := range srv.Inheritance().TakeConns(spec.Addr) {
		c, err := net.FileConn(h.File())
		h.File().Close()
		if err != nil {
			cs.log.Error("resume handed-over connection failed", "err", err)
			continue
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			cs.log.Error("resume handed-over connection failed: not a unix connection")
			continue
		}
		cs.log.Info("resumed connection", "replay", h.Replay, "pending", len(h.Pending))
		a.Adopt(uc, func(ctx context.Context, c *net.UnixConn) { cs.serve(ctx, c, h.Replay, h.Pending) })
	}
	if err := srv.Add(cs); err != nil {
		cs.Stop(context.Background(), false)
		return nil, err
	}
	return cs, nil
}

// Addr returns the listening address.
func (cs *Server) Addr() string { return cs.a.Addr() }

// Active returns the number of connected clients.
func (cs *Server) Active() int { return cs.a.Active() }

// Front implements ctl.ConnCounter.
func (cs *Server) Front() ctl.Front { return ctl.FrontConsole }

// Conns implements ctl.ConnCounter.
func (cs *Server) Conns() (active, accepted uint64) {
	return uint64(cs.a.Active()), cs.a.Accepted()
}

// Stop implements ctl.Frontend: it stops the console. Without handoff,
// running commands are cancelled and connections closed. With handoff,
// streaming commands are cancelled, non-streaming ones finish and reply,
// and every live connection is returned (with its persistent line and
// unread input) instead of being closed.
func (cs *Server) Stop(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	f, err := cs.a.StopAccepting(handoff)
	if handoff {
		cs.handoffOnce.Do(func() { close(cs.handoff) })
	} else {
		cs.a.CancelConns()
	}
	waited := make(chan struct{})
	go func() { cs.a.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		cs.a.CancelConns()
		cs.mu.Lock()
		n := len(cs.sessions)
		for ss := range cs.sessions {
			ss.conn.Close()
		}
		cs.mu.Unlock()
		cs.log.Warn("closing connections whose commands did not stop in time", "conns", n, "handoff", handoff)
		<-waited
	}
	cs.a.CancelConns()
	if !handoff {
		cs.a.Socket().Remove()
		return nil, nil
	}
	if err != nil {
		for _, h := range cs.handed {
			h.File().Close()
		}
		return nil, fmt.Errorf("console handoff: %w", err)
	}
	cs.mu.Lock()
	conns := cs.handed
	cs.handed = nil
	cs.mu.Unlock()
	return &unixsock.Files{Sock: f, Owned: cs.a.Socket().Created, Conns: conns}, nil
}

// Stop reasons for a running command, kept as context causes so that the
// session knows whether to print the final result.
var (
	errSuperseded = errors.New("superseded by the next line")
	errClientEOF  = errors.New("client closed its side")
	errHandoff    = errors.New("re-exec handoff")
	errWrite      = errors.New("write to client failed")
)

// consoleSession is one console connection. A reader goroutine fills a
// bounded input buffer; the session goroutine takes complete lines from
// it and runs them one at a time, so that input keeps arriving (and can
// cancel a streaming command) while a command runs, and so that unread
// input can be handed to the next image intact.
type consoleSession struct {
	cs   *Server
	conn *net.UnixConn
	log  *slog.Logger
	max  int // input buffer bound: MaxLine plus the newline

	mu      sync.Mutex
	cond    *sync.Cond // signals the reader that room was made or it must stop
	inbuf   []byte
	eof     bool // the reader saw EOF or an error
	stop    bool // the reader must stop (handoff)
	discard bool // skipping the rest of an overlong line

	more       chan struct{} // the reader added input (capacity 1)
	readerDone chan struct{}

	wmu  sync.Mutex
	werr error

	replay     string // last persistent command line run here
	halfClosed bool
	// oneShot is set by a "!" line and never cleared: gone half-closes
	// after the next command that completes, which is not the "!" line's
	// own when that named an unknown command.
	oneShot bool
}

// serve runs one session until the client quits or disconnects, the
// console closes, or a handoff takes the connection.
func (cs *Server) serve(ctx context.Context, c *net.UnixConn, replay string, pending []byte) {
	ss := &consoleSession{
		cs: cs, conn: c, log: cs.log, max: cs.opts.MaxLine + 1,
		more:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
		replay:     replay,
	}
	ss.cond = sync.NewCond(&ss.mu)
	if len(pending) > 0 {
		ss.inbuf = append(ss.inbuf, pending...)
	}
	cs.mu.Lock()
	cs.sessions[ss] = struct{}{}
	cs.mu.Unlock()
	defer func() {
		cs.mu.Lock()
		delete(cs.sessions, ss)
		cs.mu.Unlock()
	}()
	go ss.readLoop()
	handed := ss.run(ctx)
	if !handed {
		c.Close()
		ss.stopReader()
		<-ss.readerDone
	}
}

func (ss *consoleSession) readLoop() {
	defer close(ss.readerDone)
	buf := make([]byte, 4096)
	for {
		ss.mu.Lock()
		for !ss.stop && len(ss.inbuf) >= ss.max {
			ss.cond.Wait()
		}
		if ss.stop {
			ss.mu.Unlock()
			return
		}
		room := min(ss.max-len(ss.inbuf), len(buf))
		ss.mu.Unlock()
		n, err := ss.conn.Read(buf[:room])
		ss.mu.Lock()
		ss.inbuf = append(ss.inbuf, buf[:n]...)
		stopped := ss.stop
		if err != nil && !stopped {
			ss.eof = true
		}
		ss.mu.Unlock()
		ss.notify()
		if err != nil || stopped {
			return
		}
	}
}

func (ss *consoleSession) notify() {
	select {
	case ss.more <- struct{}{}:
	default:
	}
}

// stopReader makes the reader return without consuming more input and
// without closing the connection.
func (ss *consoleSession) stopReader() {
	ss.mu.Lock()
	ss.stop = true
	ss.cond.Broadcast()
	ss.mu.Unlock()
	ss.conn.SetReadDeadline(time.Now())
}

// next takes the next complete line from the input buffer. At EOF an
// unterminated last line counts as a line. An overlong line yields
// tooLong once and is then skipped up to its newline.
func (ss *consoleSession) next() (line string, ok, tooLong, eof bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	defer ss.cond.Broadcast()
	for ss.discard {
		i := bytes.IndexByte(ss.inbuf, '\n')
		if i < 0 {
			ss.inbuf = ss.inbuf[:0]
			return "", false, false, ss.eof
		}
		ss.inbuf = ss.inbuf[:copy(ss.inbuf, ss.inbuf[i+1:])]
		ss.discard = false
	}
	if i := bytes.IndexByte(ss.inbuf, '\n'); i >= 0 {
		line = string(ss.inbuf[:i])
		ss.inbuf = ss.inbuf[:copy(ss.inbuf, ss.inbuf[i+1:])]
		return line, true, false, false
	}
	if len(ss.inbuf) >= ss.max {
		ss.inbuf = ss.inbuf[:0]
		ss.discard = true
		return "", false, true, false
	}
	if ss.eof && len(ss.inbuf) > 0 {
		line = string(ss.inbuf)
		ss.inbuf = ss.inbuf[:0]
		return line, true, false, false
	}
	return "", false, false, ss.eof
}

// hasInput reports whether a new line with words in it (or EOF) is
// waiting: what cancels a streaming command. Blank lines waiting in
// front of it are dropped, as gone reads past them without touching the
// running command.
func (ss *consoleSession) hasInput() (bool, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for !ss.discard {
		i := bytes.IndexByte(ss.inbuf, '\n')
		if i < 0 || !ss.cs.blank(string(ss.inbuf[:i])) {
			break
		}
		ss.inbuf = ss.inbuf[:copy(ss.inbuf, ss.inbuf[i+1:])]
		ss.cond.Broadcast()
	}
	switch {
	case ss.eof:
		return true, errClientEOF
	case bytes.IndexByte(ss.inbuf, '\n') >= 0, len(ss.inbuf) >= ss.max:
		return true, errSuperseded
	}
	return false, nil
}

// step is what the session does after a line.
type step int

const (
	stepNext    step = iota // read the next line
	stepStop                // close the connection
	stepHandoff             // hand the connection to the next image
)

// run is the session loop. It reports whether the connection was handed
// over (and so must not be closed).
func (ss *consoleSession) run(ctx context.Context) bool {
	if ss.replay != "" {
		line := ss.replay
		ss.replay = ""
		// A complete line that arrived during the handoff would have
		// cancelled a streaming command at once: skip its replay then.
		if in, _ := ss.hasInput(); !in || !ss.isStream(line) {
			ss.log.Info("replaying persistent command", "line", line)
			switch ss.execute(ctx, line) {
			case stepStop:
				return false
			case stepHandoff:
				return ss.handOver()
			}
		}
	}
	for {
		select {
		case <-ss.cs.handoff:
			return ss.handOver()
		case <-ctx.Done():
			return false
		default:
		}
		if ss.failed() {
			return false
		}
		line, ok, tooLong, eof := ss.next()
		switch {
		case tooLong:
			ss.log.Warn("input line too long; skipping it", "limit", ss.cs.opts.MaxLine)
			if !ss.halfClosed {
				ss.write(fmt.Sprintf("%sline too long (more than %d bytes)\n", consoleErrorPrefix, ss.cs.opts.MaxLine))
			}
			continue
		case ok:
			if ss.halfClosed {
				// After "!" the client only gets EOF; its further
				// input is read and dropped until it closes.
				continue
			}
			switch ss.execute(ctx, line) {
			case stepStop:
				return false
			case stepHandoff:
				return ss.handOver()
			}
			continue
		case eof:
			return false
		}
		select {
		case <-ss.more:
		case <-ss.cs.handoff:
		case <-ctx.Done():
		}
	}
}

func (ss *consoleSession) failed() bool {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return ss.werr != nil
}

func (ss *consoleSession) isStream(line string) bool {
	words, err := ss.cs.split(line)
	if err != nil || len(words) == 0 {
		return false
	}
	if words[0] == "!" {
		words = words[1:]
	}
	if len(words) == 0 {
		return false
	}
	c, ok := ss.cs.r.Lookup(words[0])
	return ok && c.Stream
}

// split cuts a line into words: on whitespace exactly as gone does
// (bufio.ScanWords: Unicode spaces, no quoting, no comments), or with
// Tokenize when quoting is on.
func (cs *Server) split(line string) ([]string, error) {
	if cs.opts.Quoting {
		return ctl.Tokenize(line)
	}
	return goneWords(line), nil
}

// blank reports whether a line has no words (a quoting error counts as
// words: it is answered).
func (cs *Server) blank(line string) bool {
	words, err := cs.split(line)
	return err == nil && len(words) == 0
}

// goneWords splits on whitespace with the standard library's word
// splitter, the one gone's ctrl server uses, so that every Unicode space
// and every invalid UTF-8 byte is treated the same way.
func goneWords(line string) []string {
	var words []string
	data := []byte(line)
	for len(data) > 0 {
		adv, tok, _ := bufio.ScanWords(data, true)
		if adv <= 0 {
			break
		}
		data = data[adv:]
		if tok != nil {
			words = append(words, string(tok))
		}
	}
	return words
}

// handOver stops the reader and passes the connection, its unread input
// and its persistent line to the server's handoff list. A half-closed or
// broken connection is not worth resuming.
func (ss *consoleSession) handOver() bool {
	ss.stopReader()
	<-ss.readerDone
	if ss.halfClosed || ss.failed() {
		return false
	}
	ss.mu.Lock()
	pending := append([]byte(nil), ss.inbuf...)
	if ss.discard {
		if i := bytes.IndexByte(pending, '\n'); i >= 0 {
			pending = pending[i+1:]
		} else {
			pending = nil
		}
	}
	ss.mu.Unlock()
	// A client that already sent EOF still gets its pending lines
	// answered by the next image, which sees the EOF again.
	f, err := ss.conn.File()
	if err != nil {
		ss.log.Error("handoff: duplicate connection failed; closing it", "err", err)
		return false
	}
	ss.conn.Close()
	ss.cs.mu.Lock()
	ss.cs.handed = append(ss.cs.handed, unixsock.NewHandoffConn(f, ss.replay, pending))
	ss.cs.mu.Unlock()
	return true
}

// write sends text to the client with a bounded wait. The first failure
// is remembered and ends the session.
func (ss *consoleSession) write(s string) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.werr != nil {
		return ss.werr
	}
	ss.conn.SetWriteDeadline(time.Now().Add(ss.cs.opts.WriteTimeout))
	if _, err := ss.conn.Write([]byte(s)); err != nil {
		ss.werr = err
		ss.log.Info("write to client failed; closing connection", "err", err)
		return err
	}
	return nil
}

// execute runs one input line and says what to do next, following
// gone's ctrl server: a blank line does nothing; "q" closes; "?" lists
// the commands and "? cmd" prints one usage; "!" alone is ignored, and
// "! cmd args" runs the command and half-closes the connection after it
// (and after every later command: an unknown one does not close, so the
// next one does); anything else is a command.
func (ss *consoleSession) execute(ctx context.Context, line string) step {
	words, err := ss.cs.split(line)
	if err != nil {
		ss.log.Warn("bad console line", "err", err)
		ss.write(consoleErrorPrefix + err.Error() + "\n")
		return ss.completed(ctx, stepNext)
	}
	if len(words) == 0 {
		return stepNext
	}
	switch words[0] {
	case "q":
		return stepStop
	case "?":
		if len(words) >= 2 {
			c, ok := ss.cs.r.Lookup(words[1])
			if !ok {
				ss.write(consoleUnknown)
				return stepNext
			}
			switch {
			case c.Help != nil:
				ss.write(ss.frontedHelp(ctx, c, words[2:]))
			case len(words) == 2:
				ss.write(c.LongUsage())
			default:
				ss.write(ss.help())
			}
		} else {
			ss.write(ss.help())
		}
		return ss.completed(ctx, stepNext)
	case "!":
		if len(words) == 1 {
			return stepNext
		}
		words = words[1:]
		ss.oneShot = true
	}
	c, ok := ss.cs.r.Lookup(words[0])
	if !ok {
		ss.log.Info("unknown console command", "command", words[0])
		ss.cs.r.Count(ctl.FrontConsole, ctl.Unsupported)
		ss.write(consoleUnknown)
		return stepNext
	}
	return ss.completed(ctx, ss.dispatch(ctx, c, line, words))
}

// completed ends a command that ran (or failed to start): after a "!"
// line the connection is half-closed, whatever the outcome.
func (ss *consoleSession) completed(ctx context.Context, next step) step {
	if ss.oneShot && next != stepHandoff {
		ss.halfClose()
	}
	if next == stepNext {
		if ss.failed() || ctx.Err() != nil {
			return stepStop
		}
	}
	return next
}

func (ss *consoleSession) dispatch(ctx context.Context, c *ctl.Command, line string, words []string) step {
	tc, err := ctl.ParseWords(words)
	if err == nil {
		if tc.Help {
			if c.Help != nil {
				ss.write(ss.frontedHelp(ctx, c, tc.Input.Positional))
			} else {
				ss.write(c.LongUsage())
			}
			return stepNext
		}
		// Parameters are checked before the command starts, so that
		// their error is printed even for a streaming command that a
		// line already waiting would cancel at once: gone prints a
		// command's refusal of its arguments the same way.
		_, err = c.Bind(tc.Input)
	}
	if err != nil {
		ss.log.Info("console command refused", "command", c.Name, "err", err)
		ss.write(consoleErrorPrefix + err.Error() + "\n")
		return stepNext
	}
	if c.Persistent {
		ss.replay = line
	}
	cause := ss.runCommand(ctx, c, tc)
	switch {
	case errors.Is(cause, errHandoff):
		return stepHandoff
	case c.Stream && errors.Is(cause, errSuperseded):
		// The user moved on: the stream is not wanted after a re-exec
		// either.
		if c.Persistent {
			ss.replay = ""
		}
	}
	return stepNext
}

func (ss *consoleSession) halfClose() {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if err := ss.conn.CloseWrite(); err != nil {
		ss.log.Info("half-close failed", "err", err)
	}
	ss.halfClosed = true
}

// runCommand runs c in its own goroutine so that the session can watch
// for a new line, EOF, shutdown or handoff, which cancel a streaming
// command. Non-streaming commands always run to completion (bounded by
// the close deadline) so that their reply is written, even across a
// re-exec. It returns why the command was cancelled, if it was.
func (ss *consoleSession) runCommand(ctx context.Context, c *ctl.Command, tc ctl.TextCommand) error {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := &consoleOut{ss: ss, cancel: cancel}
	done := make(chan ctl.Result, 1)
	in := tc.Input
	in.Front = ctl.FrontConsole
	go func() { done <- ss.cs.r.Run(cctx, c, in, out) }()
	if c.Stream {
		if in, why := ss.hasInput(); in {
			cancel(why)
		}
	}
	handoff := ss.cs.handoff
	more := ss.more
	if !c.Stream {
		more = nil
	}
	var res ctl.Result
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-more:
			if in, why := ss.hasInput(); in {
				cancel(why)
				more = nil
			}
		case <-handoff:
			if c.Stream {
				cancel(errHandoff)
			}
			handoff = nil
		}
	}
	out.close()
	// The reader may have signalled while we waited; let the loop see it.
	ss.notify()
	var why error
	if cctx.Err() != nil {
		why = context.Cause(cctx)
	}
	// A streaming command that was stopped (by the next line, EOF,
	// shutdown or a re-exec) has said all it has to say in its lines: as
	// in gone, nothing follows them. One that ended by itself, and every
	// other command, gets its result printed.
	if !c.Stream || why == nil {
		ss.write(renderResult(res, out.wrote(), ss.cs.opts.ShowArgs))
	}
	if res.Code != ctl.Success && res.Code != ctl.Empty {
		ss.log.Info("console command failed", "command", c.Name, "code", res.Code, "text", res.Text)
	}
	return why
}

// consoleOut is a command's Call.Out: each Write is sent as a line. It
// refuses writes once the command has returned, so that a goroutine a
// handler left behind cannot interleave with the next command.
type consoleOut struct {
	ss     *consoleSession
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	closed bool
	n      int // writes sent
}

func (o *consoleOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, errors.New("console: command output after the command returned")
	}
	s := string(p)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if err := o.ss.write(s); err != nil {
		o.cancel(errWrite)
		return 0, err
	}
	o.n++
	return len(p), nil
}

// wrote reports whether the command printed anything itself.
func (o *consoleOut) wrote() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n > 0
}

func (o *consoleOut) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// help answers "?" in gone's layout: a header, a row for "q" and one
// for "?", then one row per command name (aliases included, as each is
// a name gone would have registered), as "name syntax - comment" padded
// to columns. The widths are byte lengths of the registered names,
// syntaxes and comments while fmt pads in runes, exactly as gone does,
// so that non-ASCII text lines up the same way there and here. The rows
// are sorted; gone's come in map order, which varies from run to run.
func (ss *consoleSession) help() string {
	names := ss.cs.r.Names()
	cmds := make([]*ctl.Command, 0, len(names))
	for _, n := range names {
		if c, ok := ss.cs.r.Lookup(n); ok {
			cmds = append(cmds, c)
		}
	}
	return helpTable(names, cmds, helpRow{"q", "", "exit and close the connection"}, helpRow{"?", "[cmd]", "help"})
}

type helpRow struct{ name, syntax, comment string }

// helpTable lays out "?"'s table: the header, the fixed rows, then one
// row per name (names[i] naming cmds[i]).
func helpTable(names []string, cmds []*ctl.Command, fixed ...helpRow) string {
	rows := make([]helpRow, 0, len(fixed)+len(names))
	rows = append(rows, fixed...)
	for i, n := range names {
		rows = append(rows, helpRow{n, cmds[i].Synopsis(), cmds[i].Comment})
	}
	var nameW, synW, comW int
	for _, r := range rows[len(fixed):] {
		nameW, synW, comW = max(nameW, len(r.name)), max(synW, len(r.syntax)), max(comW, len(r.comment))
	}
	var b strings.Builder
	b.WriteString(consoleHelpHeader)
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s %-*s - %-*s\n", nameW, r.name, synW, r.syntax, comW, r.comment)
	}
	return b.String()
}

// frontedHelp answers a usage request for a command that fronts others
// (ctl.Command.Help): with no words, their table, laid out as "?" lays
// out this console's (each name and alias a row, sorted); with words,
// the usage of the one they name. A failure (the daemon behind it is
// down, or has no such command) is an error line.
func (ss *consoleSession) frontedHelp(ctx context.Context, c *ctl.Command, words []string) string {
	cmds, err := c.Help(ctx, words)
	if err == nil && len(words) > 0 && len(cmds) != 1 {
		err = fmt.Errorf("%s: %d commands for %q", c.Name, len(cmds), words[0])
	}
	if err != nil {
		ss.log.Info("usage request failed", "command", c.Name, "err", err)
		return consoleErrorPrefix + err.Error() + "\n"
	}
	if len(words) > 0 {
		return cmds[0].LongUsage()
	}
	type named struct {
		name string
		c    *ctl.Command
	}
	var all []named
	for _, fc := range cmds {
		all = append(all, named{fc.Name, fc})
		for _, a := range fc.Aliases {
			all = append(all, named{a, fc})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	names := make([]string, len(all))
	list := make([]*ctl.Command, len(all))
	for i, n := range all {
		names[i], list[i] = n.name, n.c
	}
	return helpTable(names, list)
}

// renderResult prints a result the way a gone command would have
// written it. A failure is gone's error line, "Error:  text". Otherwise
// the text is the command's output line. The arguments follow when
// showArgs asks for them, or when the command produced no text at all
// (neither on Out nor in the result): then they are its whole answer and
// are shown as "key: value" lines rather than dropped.
func renderResult(r ctl.Result, wrote, showArgs bool) string {
	if r.Code != ctl.Success && r.Code != ctl.Empty {
		text := r.Text
		if text == "" {
			text = fmt.Sprintf("command failed (result %d)", r.Code)
		}
		s := consoleErrorPrefix + text + "\n"
		if showArgs && r.Args != nil {
			s += renderArgs(r.Args)
		}
		return s
	}
	var b strings.Builder
	if r.Text != "" {
		b.WriteString(r.Text)
		if !strings.HasSuffix(r.Text, "\n") {
			b.WriteByte('\n')
		}
	}
	if r.Args != nil && (showArgs || (!wrote && r.Text == "")) {
		b.WriteString(renderArgs(r.Args))
	}
	return b.String()
}

// renderArgs writes arguments YAML-like: a map as sorted "key: value"
// lines with nested maps and lists indented below their key, a
// top-level list as one element per line, multi-line strings as an
// indented block. Values go through JSON first so that structs render
// the way the JSON front ends show them.
func renderArgs(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v\n", v)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var val any
	if err := dec.Decode(&val); err != nil {
		return string(raw) + "\n"
	}
	var b strings.Builder
	switch x := val.(type) {
	case nil:
	case map[string]any:
		renderMap(&b, x, "")
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				b.WriteString(s + "\n")
			} else {
				b.WriteString(compactJSON(e) + "\n")
			}
		}
	default:
		renderScalar(&b, "", val, "")
	}
	return b.String()
}

func renderMap(b *strings.Builder, m map[string]any, indent string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		renderField(b, indent, k+":", m[k])
	}
}

// renderField writes one "label value" entry; label is "key:" or "-".
func renderField(b *strings.Builder, indent, label string, v any) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString(indent + label + " {}\n")
			return
		}
		b.WriteString(indent + label + "\n")
		renderMap(b, x, indent+"  ")
	case []any:
		if len(x) == 0 {
			b.WriteString(indent + label + " []\n")
			return
		}
		b.WriteString(indent + label + "\n")
		for _, e := range x {
			renderField(b, indent+"  ", "-", e)
		}
	default:
		renderScalar(b, indent, v, label)
	}
}

func renderScalar(b *strings.Builder, indent string, v any, label string) {
	prefix := indent
	if label != "" {
		prefix += label + " "
	}
	s, isString := v.(string)
	if !isString {
		b.WriteString(prefix + compactJSON(v) + "\n")
		return
	}
	if !strings.Contains(strings.TrimRight(s, "\n"), "\n") && utf8.ValidString(s) {
		b.WriteString(prefix + strings.TrimRight(s, "\n") + "\n")
		return
	}
	if label == "" {
		b.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			b.WriteByte('\n')
		}
		return
	}
	b.WriteString(strings.TrimRight(prefix, " ") + "\n")
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(indent + "  " + l + "\n")
	}
}

func compactJSON(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(raw)
}
