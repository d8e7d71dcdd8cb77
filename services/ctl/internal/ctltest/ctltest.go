// Package ctltest holds what the front-end packages' tests share:
//
//   - CloseOnCleanup closes a ctl.Server when a test ends.
package ctltest

import (
	"context"
	"testing"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl"
)

// CloseOnCleanup closes srv when the test ends, giving in-flight work 5 s.
func CloseOnCleanup(t testing.TB, srv *ctl.Server) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
}
