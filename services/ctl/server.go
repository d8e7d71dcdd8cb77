package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tickbox-fw/tickbox/internal/unixsock"
)

// Server runs a daemon's front ends over one Registry. It adopts
// sockets inherited through socket activation or a re-exec, and can
// re-exec the daemon in place, handing its sockets and the connections
// front ends want to keep to the new image.
type Server struct {
	r       *Registry
	log     *slog.Logger
	inherit *unixsock.Inheritance

	mu     sync.Mutex
	fronts []Frontend
	closed bool
	// reexecing is set while Reexec hands the front ends over, so that a
	// second request (signal and command at once) cannot exec with no
	// sockets left to hand over.
	reexecing bool
	// failed records why the server cannot go on (a re-exec that closed
	// the front ends and then could not exec); Run returns it.
	failed error

	// subs receive Publish's events.
	smu  sync.RWMutex
	subs map[*subscription]struct{}
}

// Frontend is a running front end as the Server sees it: something it
// stops on Close and hands over on Reexec. The front-end packages
// implement it and register with Add.
type Frontend interface {
	// Addr is the listening address (or the peer's, for a connection
	// the daemon dialled).
	Addr() string
	// Stop stops the front end within ctx. With handoff set it keeps
	// the socket and returns it, and any connections to resume, for a
	// re-exec; otherwise it removes a socket file it created and
	// returns nil.
	Stop(ctx context.Context, handoff bool) (*unixsock.Files, error)
}

// NewServer returns a server for r. It reads inherited sockets from the
// environment (and unsets those variables) once, here.
func NewServer(r *Registry) *Server {
	return NewServerFrom(r, unixsock.ReadEnv(r.Logger()))
}

// NewServerFrom returns a server for r that adopts its sockets from in
// rather than from the environment: tests hand sockets over in-process
// with unixsock.Hold. A resumed inheritance restores r's start time and
// reload count.
func NewServerFrom(r *Registry, in *unixsock.Inheritance) *Server {
	s := &Server{r: r, log: r.Logger(), inherit: in}
	if started, reloads, ok := in.Resumed(); ok {
		r.restoreState(started, reloads)
	}
	r.smu.Lock()
	r.srv = s
	r.smu.Unlock()
	return s
}

// Registry returns the server's registry.
func (s *Server) Registry() *Registry { return s.r }

// Logger returns the daemon's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Inheritance returns the sockets this process inherited, so that front
// ends (and servers outside the control plane) adopt theirs from the
// same set; the environment is read only once, by NewServer.
func (s *Server) Inheritance() *unixsock.Inheritance { return s.inherit }

// Resumed reports whether this process was started by a re-exec.
func (s *Server) Resumed() bool {
	_, _, ok := s.inherit.Resumed()
	return ok
}

// Add registers a running front end, so that Close stops it and Reexec
// hands it over. It fails once the server is closed; the front end
// should then stop itself.
func (s *Server) Add(f Frontend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server closed")
	}
	s.fronts = append(s.fronts, f)
	return nil
}

// Remove forgets a front end that ended on its own (an outgoing
// connection), so a daemon that reconnects in a loop does not grow the
// list.
func (s *Server) Remove(f Frontend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.fronts {
		if g == f {
			s.fronts = append(s.fronts[:i], s.fronts[i+1:]...)
			return
		}
	}
}

// Run serves until ctx is cancelled or a shutdown command arrives, then
// closes every front end (giving in-flight commands up to 5 s) and
// returns. Inherited sockets no front end adopted are closed first.
func (s *Server) Run(ctx context.Context) error {
	s.inherit.CloseUnused(s.log)
	select {
	case <-ctx.Done():
	case <-s.r.ShutdownRequested():
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Close(cctx)
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	return errors.Join(failed, err)
}

// Fail records a fatal error and makes Run return it, so that the
// program exits non-zero and its supervisor restarts it.
func (s *Server) Fail(err error) {
	s.log.Error("server failed", "err", err)
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
	s.r.RequestShutdown()
}

// Close stops every front end and removes the socket files it created.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	fronts := s.fronts
	s.fronts, s.closed = nil, true
	s.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.Stop(ctx, false); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", f.Addr(), err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reexec replaces the running program with the executable at its path,
// keeping the PID, so that a supervisor such as gokrazy's does not see a
// restart. Listening sockets are handed over (queued datagrams and
// pending connections stay in the kernel), connections a front end
// hands over survive (with what they need to resume), and in-flight
// commands finish first. It returns only on failure; the front ends are closed by
// then and the caller should exit non-zero so that the supervisor
// restarts it.
func (s *Server) Reexec() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("re-exec: %w", err)
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	if err := syscall.Access(exe, 1 /* X_OK */); err != nil {
		return fmt.Errorf("re-exec %s: %w", exe, err)
	}
	s.mu.Lock()
	if s.closed || s.reexecing {
		s.mu.Unlock()
		return errors.New("re-exec: server is closed or already re-executing")
	}
	fronts := s.fronts
	s.fronts, s.closed, s.reexecing = nil, true, true
	s.mu.Unlock()

	started, reloads := s.r.state()
	h := unixsock.Handoff{Started: started.UnixNano(), Reloads: reloads}
	var keep []*os.File
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, f := range fronts {
		hf, err := f.Stop(ctx, true)
		if err != nil {
			s.log.Error("re-exec: front end handoff failed", "addr", f.Addr(), "err", err)
			continue
		}
		if hf == nil {
			continue
		}
		if hf.Sock != nil {
			keep = append(keep, hf.Sock)
			h.Listeners = append(h.Listeners, unixsock.HandoffSock{FD: int(hf.Sock.Fd()), Addr: f.Addr(), Owned: hf.Owned})
		}
		for _, c := range hf.Conns {
			keep = append(keep, c.File())
			c.FD = int(c.File().Fd())
			c.Listener = f.Addr()
			h.Conns = append(h.Conns, c)
		}
	}
	for _, f := range keep {
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); e != 0 {
			return fmt.Errorf("re-exec: clear close-on-exec: %w", e)
		}
	}
	state, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("re-exec: %w", err)
	}
	env := []string{unixsock.HandoffEnv + "=" + string(state)}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, unixsock.HandoffEnv+"=") {
			env = append(env, e)
		}
	}
	s.log.Info("re-executing in place", "exe", exe, "listeners", len(h.Listeners), "conns", len(h.Conns))
	err = syscall.Exec(exe, os.Args, env)
	runtime.KeepAlive(keep)
	return fmt.Errorf("re-exec %s: %w", exe, err)
}

// ReexecCommand returns a "reexec" command that replies, then re-executes
// the daemon in place. The re-exec runs after the handler returns: the
// front ends' handoff waits for in-flight non-streaming commands, so the
// reply reaches the client before the exec.
func (s *Server) ReexecCommand() *Command {
	return &Command{
		Name:    "reexec",
		Comment: "re-execute the daemon in place (same pid), keeping sockets and console sessions",
		Handler: func(context.Context, *Call) Result {
			go func() {
				if err := s.Reexec(); err != nil {
					s.Fail(err)
				}
			}()
			return OK("Re-executing.", nil)
		},
	}
}

// Subscriber receives the events a daemon publishes (link changes, log
// lines) for front ends that pass them on to their clients. Event must
// not block: a subscriber that cannot keep up drops for its own clients.
type Subscriber interface {
	Event(msg string)
}

type subscription struct{ Subscriber }

// Subscribe makes sub receive every later Publish until the returned
// function is called.
func (s *Server) Subscribe(sub Subscriber) (unsubscribe func()) {
	e := &subscription{sub}
	s.smu.Lock()
	if s.subs == nil {
		s.subs = make(map[*subscription]struct{})
	}
	s.subs[e] = struct{}{}
	s.smu.Unlock()
	return func() {
		s.smu.Lock()
		delete(s.subs, e)
		s.smu.Unlock()
	}
}

// Publish sends msg to every subscriber: the daemon's events reach the
// clients of every front end that carries events, listened or dialled
// out. It never blocks on a slow client.
func (s *Server) Publish(msg string) {
	s.smu.RLock()
	defer s.smu.RUnlock()
	for e := range s.subs {
		e.Event(msg)
	}
}
