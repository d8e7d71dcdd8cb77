package mctp

// Internals the external tests (package mctp_test) read.

// TestWire is the recording test binding of mctp_test.go.
type TestWire = wire

// NewTestWire returns a recording binding named name with the given MTU.
func NewTestWire(name string, mtu int) *TestWire { return &wire{name: name, mtu: mtu} }

// Take returns and forgets the packets sent so far.
func (w *wire) Take() [][]byte { return w.take() }

// SetRefuse makes Send fail with err (nil: succeed again).
func (w *wire) SetRefuse(err error) { w.setRefuse(err) }

// ClientTypes is the list the control responder answers Get Message
// Type Support with.
func (r *Router) ClientTypes() []byte { return r.clientTypes() }

// FlagTO and TagMask are the header's TO bit and tag field.
const (
	FlagTO  = flagTO
	TagMask = tagMask
)
