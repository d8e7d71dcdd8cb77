package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalError is the cause of a context [SignalContext] cancelled.
type SignalError struct{ Signal os.Signal }

func (e *SignalError) Error() string { return "received " + e.Signal.String() }

// SignalContext returns a context that the first SIGINT or SIGTERM
// cancels, with a [SignalError] as its cause. From then on the signals
// have their default action again, so a second one ends a program whose
// shutdown hangs. stop releases the signals and cancels the context.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-ch:
			cancel(&SignalError{Signal: s})
		case <-ctx.Done():
		}
		signal.Stop(ch)
	}()
	return ctx, func() {
		cancel(context.Canceled)
		<-done
	}
}

// Signal returns the signal that cancelled ctx (see [SignalContext]), or
// nil when ctx is live or ended another way.
func Signal(ctx context.Context) os.Signal {
	var se *SignalError
	if errors.As(context.Cause(ctx), &se) {
		return se.Signal
	}
	return nil
}

// Caught holds signals a daemon acts on besides SIGINT and SIGTERM. They
// are caught from [Catch] on, so that one that arrives before the daemon
// can act on it (SIGHUP's default is to end the process) waits for
// [Caught.Handle] instead.
type Caught struct {
	ch   chan os.Signal
	once sync.Once
	stop chan struct{}
}

// caughtQueue is how many signals wait for Handle; more of the same kind
// in the meantime are dropped, as the kernel merges pending signals.
const caughtQueue = 8

// Catch starts catching sigs.
func Catch(sigs ...os.Signal) *Caught {
	c := &Caught{ch: make(chan os.Signal, caughtQueue), stop: make(chan struct{})}
	signal.Notify(c.ch, sigs...)
	return c
}

// Handle calls f for each caught signal, in order of arrival, until ctx
// ends or Stop is called.
func (c *Caught) Handle(ctx context.Context, f func(os.Signal)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		case s := <-c.ch:
			f(s)
		}
	}
}

// Stop gives the signals their default action back and ends Handle.
func (c *Caught) Stop() {
	c.once.Do(func() {
		signal.Stop(c.ch)
		close(c.stop)
	})
}
