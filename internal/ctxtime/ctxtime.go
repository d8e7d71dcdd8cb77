// Package ctxtime waits on the clock and a context at once.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits for d and reports true, or returns false as soon as ctx
// ends, whichever comes first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
