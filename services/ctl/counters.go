package ctl

import (
	"slices"
	"sync/atomic"
)

// Front names the front end a request came through. Each front end sets
// it in the Input it hands to Registry.Run, and status-get reports the
// requests per front end and result.
type Front uint8

// The front ends. FrontInternal is the zero value: a command the daemon
// runs itself (Registry.Invoke from its own code or a test).
const (
	FrontInternal Front = iota
	FrontKea
	FrontHTTP
	FrontIPC
	FrontDgram
	FrontConsole
	numFronts
)

var frontNames = [numFronts]string{"internal", "kea", "http", "ipc", "dgram", "console"}

// String returns the name status-get reports the front end under.
func (f Front) String() string {
	if f < numFronts {
		return frontNames[f]
	}
	return "unknown"
}

// numCodes is the number of result codes counted by name; codes beyond
// Conflict are counted as "other".
const numCodes = int(Conflict) + 2

var codeNames = [numCodes]string{"success", "error", "unsupported", "empty", "conflict", "other"}

// String returns the code's name ("success", "error", "unsupported",
// "empty", "conflict"), or "other" for a code outside the convention.
func (c Code) String() string { return codeNames[codeIndex(c)] }

func codeIndex(c Code) int {
	if c < 0 || c > Conflict {
		return numCodes - 1
	}
	return int(c)
}

// counters is a registry's request count: one atomic word per front end
// and result code, so that counting costs one uncontended add.
type counters [numFronts][numCodes]atomic.Uint64

func (cs *counters) add(f Front, c Code) {
	if f >= numFronts {
		f = FrontInternal
	}
	cs[f][codeIndex(c)].Add(1)
}

// ConnCounter is implemented by a front end that counts its
// connections; status-get reports them under the front end's name.
type ConnCounter interface {
	// Front is the front end's kind.
	Front() Front
	// Conns returns the connections being served and the number this
	// process accepted (connections a re-exec handed over are active
	// but not counted as accepted again).
	Conns() (active, accepted uint64)
}

// Count records a request that a front end answered without running a
// command (an unknown command, a malformed request), so that the
// request counters cover every request, not only those that reached
// Run.
func (r *Registry) Count(f Front, c Code) { r.reqs.add(f, c) }

// Requests returns the request counts per front end and result code
// name. Front ends with no requests are left out, and so are codes a
// front end never answered with, except that success and error are
// always present for a front end that is listed.
func (r *Registry) Requests() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for f := range r.reqs {
		var m map[string]uint64
		for c := range r.reqs[f] {
			n := r.reqs[f][c].Load()
			if n == 0 {
				continue
			}
			if m == nil {
				m = map[string]uint64{"success": 0, "error": 0}
			}
			m[codeNames[c]] = n
		}
		if m != nil {
			out[frontNames[f]] = m
		}
	}
	return out
}

// connections returns the active and accepted connection counts per
// front end kind of the server's front ends that count them.
func (s *Server) connections() (active, accepted map[string]uint64) {
	s.mu.Lock()
	fronts := slices.Clone(s.fronts)
	s.mu.Unlock()
	active, accepted = map[string]uint64{}, map[string]uint64{}
	for _, f := range fronts {
		cc, isCounter := f.(ConnCounter)
		if !isCounter {
			continue
		}
		a, n := cc.Conns()
		name := cc.Front().String()
		active[name] += a
		accepted[name] += n
	}
	return active, accepted
}
