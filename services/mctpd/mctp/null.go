package mctp

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/tickbox-fw/tickbox/services/mctpd/binding"
)

// Null is the binding without a medium: mctpd then serves only its own
// EID (loopback to its clients) and every remote send fails.
type Null struct{ refused atomic.Uint64 }

// ErrNullBinding is Null's Send error.
var ErrNullBinding = errors.New("null binding has no medium")

// Name implements binding.Binding.
func (*Null) Name() string { return "null" }

// MTU implements binding.Binding.
func (*Null) MTU() int { return binding.BaselineMTU }

// Send implements binding.Binding; it always fails.
func (n *Null) Send([]byte) error {
	n.refused.Add(1)
	return ErrNullBinding
}

// Run implements binding.Binding; it only waits for ctx.
func (*Null) Run(ctx context.Context, _ func([]byte)) error {
	<-ctx.Done()
	return nil
}

// Stats implements binding.Binding.
func (n *Null) Stats() map[string]uint64 { return map[string]uint64{"refused": n.refused.Load()} }
