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

// Server runs a daemon's front ends over one Daemon registry. It adopts
// sockets inherited through socket activation or a re-exec, and can
// re-exec the daemon in place, handing its sockets and console
// connections to the new image.
type Server struct {
	d       *Daemon
	log     *slog.Logger
	inherit *unixsock.Inheritance

	mu     sync.Mutex
	fronts []frontend
	closed bool
	// reexecing is set while Reexec hands the front ends over, so that a
	// second request (signal and command at once) cannot exec with no
	// sockets left to hand over.
	reexecing bool
	// failed records why the server cannot go on (a re-exec that closed
	// the front ends and then could not exec); Run returns it.
	failed error

	// ipc holds every IPC connection (listened or dialled out), so that
	// log events reach all of them whichever front end they came from.
	ipc ipcHub
}

// frontend is a running front end.
type frontend interface {
	// addr is the listening address.
	addr() string
	// close stops the front end within ctx. With handoff set it keeps
	// the socket and returns it, and any connections to resume, for a
	// re-exec; otherwise it removes a socket file it created.
	close(ctx context.Context, handoff bool) (*unixsock.Files, error)
}

// acceptorFront runs a bare Acceptor as a front end.
type acceptorFront struct{ *unixsock.Acceptor }

func (a acceptorFront) addr() string { return a.Addr() }

func (a acceptorFront) close(ctx context.Context, handoff bool) (*unixsock.Files, error) {
	return a.Close(ctx, handoff)
}

// NewServer returns a server for d. It reads inherited sockets from the
// environment (and unsets those variables) once, here.
func NewServer(d *Daemon) *Server {
	s := &Server{d: d, log: d.Logger(), inherit: unixsock.ReadEnv(d.Logger())}
	if started, reloads, ok := s.inherit.Resumed(); ok {
		d.restoreState(started, reloads)
	}
	return s
}

// Daemon returns the server's registry.
func (s *Server) Daemon() *Daemon { return s.d }

// Inheritance returns the sockets this process inherited, so that a
// server outside the control plane (the MCTP demux) can adopt its own
// from the same set; the environment is read only once, by NewServer.
func (s *Server) Inheritance() *unixsock.Inheritance { return s.inherit }

// Resumed reports whether this process was started by a re-exec.
func (s *Server) Resumed() bool {
	_, _, ok := s.inherit.Resumed()
	return ok
}

func (s *Server) add(f frontend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server closed")
	}
	s.fronts = append(s.fronts, f)
	return nil
}

// remove forgets a front end that ended on its own (an outgoing
// connection), so a daemon that reconnects in a loop does not grow the
// list.
func (s *Server) remove(f frontend) {
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
	case <-s.d.ShutdownRequested():
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Close(cctx)
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	return errors.Join(failed, err)
}

// fail records a fatal error and makes Run return it, so that the
// program exits non-zero and its supervisor restarts it.
func (s *Server) fail(err error) {
	s.log.Error("server failed", "err", err)
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
	s.d.RequestShutdown()
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
			if _, err := f.close(ctx, false); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", f.addr(), err))
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
// pending connections stay in the kernel), console connections survive
// and their persistent commands are replayed, and in-flight Kea commands
// finish first. It returns only on failure; the front ends are closed by
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

	started, reloads := s.d.state()
	h := unixsock.Handoff{Started: started.UnixNano(), Reloads: reloads}
	var keep []*os.File
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, f := range fronts {
		hf, err := f.close(ctx, true)
		if err != nil {
			s.log.Error("re-exec: front end handoff failed", "addr", f.addr(), "err", err)
			continue
		}
		if hf == nil {
			continue
		}
		if hf.Sock != nil {
			keep = append(keep, hf.Sock)
			h.Listeners = append(h.Listeners, unixsock.HandoffSock{FD: int(hf.Sock.Fd()), Addr: f.addr(), Owned: hf.Owned})
		}
		for _, c := range hf.Conns {
			keep = append(keep, c.File())
			c.FD = int(c.File().Fd())
			c.Listener = f.addr()
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
