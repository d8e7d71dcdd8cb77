package ctl

import (
	"bytes"
	"sync"
)

// OutputBuffer collects a command's text output (Call.Out) for front
// ends that reply once or only log. It keeps at most Max bytes and drops
// the rest, so that a chatty command cannot grow memory without bound; a
// handler may write from several goroutines.
type OutputBuffer struct {
	// Max is the number of bytes kept.
	Max int

	mu sync.Mutex
	b  bytes.Buffer
}

func (l *OutputBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.Max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Len returns the number of bytes kept.
func (l *OutputBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// String returns the bytes kept.
func (l *OutputBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
