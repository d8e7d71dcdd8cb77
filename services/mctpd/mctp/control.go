package mctp

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Control message (type 0) constants.
const (
	TypeControl = 0x00

	CmdSetEID         = 0x01
	CmdGetEID         = 0x02
	CmdGetUUID        = 0x03
	CmdGetVersion     = 0x04
	CmdGetMessageType = 0x05

	CCSuccess       = 0x00
	CCInvalidData   = 0x02
	CCInvalidLength = 0x03
	CCUnsupported   = 0x05
	// CCVersionUnsupported is Get Version Support's answer for a
	// message type without version data.
	CCVersionUnsupported = 0x80

	ctrlRq = 0x80
	ctrlD  = 0x40
	// ctrlInstance masks the instance ID of byte 1; bit 5 is reserved
	// and, as in libmctp, not echoed.
	ctrlInstance = 0x1f

	// CmdFirstTransport and CmdLastTransport bound the commands DSP0236
	// leaves to the transport bindings.
	CmdFirstTransport = 0xF0
	CmdLastTransport  = 0xFF
)

// versions is Get Version Support's answer for the control type (and
// for 0xFF, "the base specification"): 1.0, 1.1, 1.2 and 1.3.3.
var versions = []byte{0x04, 0xf1, 0xf0, 0xff, 0x00, 0xf1, 0xf1, 0xff, 0x00, 0xf1, 0xf2, 0xff, 0x00, 0xf1, 0xf3, 0xf3, 0x00}

// ValidEID reports whether eid may be an endpoint's own EID: 0 and
// 0xFF are special and 1–7 reserved.
func ValidEID(eid byte) bool { return eid >= 8 && eid != BroadcastEID }

// Responder answers control requests for the local endpoint. Its
// methods are called by the router under no lock; the callbacks give
// it the endpoint's state.
type Responder struct {
	// EID returns the current local EID; SetEID changes it.
	EID    func() byte
	SetEID func(byte)
	// Types returns the message types to list besides control.
	Types func() []byte
	// UUID is the endpoint's 16-byte UUID.
	UUID [16]byte
}

// IsRequest reports whether msg (type byte first) is a control request
// the responder answers: type 0 with Rq=1 and D=0 and a command byte.
func IsRequest(msg []byte) bool {
	return len(msg) >= 3 && msg[0] == TypeControl && msg[1]&(ctrlRq|ctrlD) == ctrlRq
}

// IsTransportCommand reports whether the control message msg carries a
// transport-specific command (0xF0-0xFF). The responder does not answer
// them: libmctp hands them to the binding's own handler and stays silent
// without one, and neither DSP0253 nor mctpd's I2C binding defines any.
// The router hands such requests to the demux clients registered for
// control messages (TypeControlReplies) instead, so that a program can
// implement a binding's commands (a tagged client can answer with the
// request's tag).
func IsTransportCommand(msg []byte) bool {
	return len(msg) >= 3 && msg[0] == TypeControl && msg[2] >= CmdFirstTransport
}

// Respond returns the reply to the control request msg (IsRequest must
// hold): byte 1 is the request's instance ID (Rq, D and the reserved bit
// cleared, as libmctp masks it), and the completion code follows the
// command byte.
func (r *Responder) Respond(msg []byte) []byte {
	cmd := msg[2]
	out := []byte{TypeControl, msg[1] & ctrlInstance, cmd}
	fail := func(cc byte) []byte { return append(out, cc) }
	switch cmd {
	case CmdSetEID:
		if len(msg) != 5 {
			return fail(CCInvalidLength)
		}
		op, eid := msg[3]&0x3, msg[4]
		if op >= 2 || !ValidEID(eid) {
			return fail(CCInvalidData)
		}
		r.SetEID(eid)
		return append(out, CCSuccess, 0x00, eid, 0x00)
	case CmdGetEID:
		if len(msg) != 3 {
			return fail(CCInvalidLength)
		}
		return append(out, CCSuccess, r.EID(), 0x01, 0x00)
	case CmdGetUUID:
		if len(msg) != 3 {
			return fail(CCInvalidLength)
		}
		return append(append(out, CCSuccess), r.UUID[:]...)
	case CmdGetVersion:
		if len(msg) != 4 {
			return fail(CCInvalidLength)
		}
		if msg[3] != 0xFF && msg[3] != TypeControl {
			return fail(CCVersionUnsupported)
		}
		return append(append(out, CCSuccess), versions...)
	case CmdGetMessageType:
		if len(msg) != 3 {
			return fail(CCInvalidLength)
		}
		types := []byte{TypeControl}
		for _, t := range r.Types() {
			if t != TypeControl {
				types = append(types, t)
			}
		}
		return append(append(out, CCSuccess, byte(len(types))), types...)
	default:
		return fail(CCUnsupported)
	}
}

// LoadUUID returns the UUID stored in dir/uuid, creating a random
// (version 4) one there on first use so it stays stable across
// restarts.
func LoadUUID(dir string) ([16]byte, error) {
	var u [16]byte
	p := filepath.Join(dir, "uuid")
	if b, err := os.ReadFile(p); err == nil {
		s := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
		d, err := hex.DecodeString(s)
		if err != nil || len(d) != 16 {
			return u, fmt.Errorf("mctp: %s: not a UUID", p)
		}
		copy(u[:], d)
		return u, nil
	} else if !os.IsNotExist(err) {
		return u, fmt.Errorf("mctp: read uuid: %w", err)
	}
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("mctp: uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return u, fmt.Errorf("mctp: state dir: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(FormatUUID(u)+"\n"), 0o644); err != nil {
		return u, fmt.Errorf("mctp: write uuid: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return u, fmt.Errorf("mctp: write uuid: %w", err)
	}
	return u, nil
}

// FormatUUID returns u in the usual 8-4-4-4-12 form.
func FormatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
