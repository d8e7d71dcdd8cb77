package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Dial connects to a console socket (a path, or "@name" for an
// abstract one).
func Dial(path string) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", path, err)
	}
	return c, nil
}

// Pipe runs an interactive console session: stdin goes to conn
// and conn's output to stdout. At stdin EOF it half-closes conn, so the
// console still answers the commands in progress (a streaming command
// ends there) before it closes; Pipe returns once the console has
// closed its side, or when ctx ends. It closes conn before returning.
//
// A reset from the console counts as a normal end: the console closes
// with input still unread after "q" or at shutdown, and Linux then
// reports ECONNRESET instead of EOF.
func Pipe(ctx context.Context, conn *net.UnixConn, stdin io.Reader, stdout io.Writer) error {
	defer conn.Close()
	go func() {
		// Write errors mean the console closed; the output side
		// reports that. The goroutine may outlive the call while stdin
		// blocks; it ends at stdin's next read or EOF.
		if _, err := io.Copy(conn, stdin); err == nil {
			conn.CloseWrite()
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, conn)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("console: %w", err)
		}
		return nil
	case <-ctx.Done():
		conn.Close()
		<-done
		return ctx.Err()
	}
}
