package ctl

import (
	"bytes"
	"sync"
)

// limitedBuffer collects a command's text output for front ends that
// reply once (Kea) or only log (datagram). It keeps at most max bytes and
// drops the rest, so that a chatty command cannot grow memory without
// bound; a handler may write from several goroutines.
type limitedBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Len returns the number of bytes kept.
func (l *limitedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// String returns the bytes kept.
func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
