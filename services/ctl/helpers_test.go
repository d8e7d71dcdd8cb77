package ctl

import (
	"context"
	"testing"
	"time"
)

// closeOnCleanup closes srv when the test ends, giving in-flight work 5 s.
func closeOnCleanup(t testing.TB, srv *Server) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
}
