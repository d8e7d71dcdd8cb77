package mctp

import (
	"errors"
	"testing"
	"time"
)

func TestParseClientTag(t *testing.T) {
	for b := 0; b < 256; b++ {
		alloc, tag, err := ParseClientTag(byte(b))
		switch {
		case b == 0x88:
			if !alloc || err != nil {
				t.Errorf("%#02x: alloc %v %v", b, alloc, err)
			}
		case b <= 7:
			if alloc || tag != uint8(b) || err != nil {
				t.Errorf("%#02x: alloc %v tag %d %v", b, alloc, tag, err)
			}
		default:
			if !errors.Is(err, ErrTagByte) {
				t.Errorf("%#02x: %v, want ErrTagByte", b, err)
			}
		}
	}
}

// TestTags runs scripts of allocator operations against a fake clock.
func TestTags(t *testing.T) {
	type step struct {
		op    string // alloc, match, release, gone, wait, count
		eid   byte
		owner ClientID
		tag   uint8 // alloc: the tag wanted (0: ErrNoTag); match, release: the tag
		ok    bool  // match: whether it matches
		n     int   // gone: tags released; count: outstanding
		wait  time.Duration
	}
	const timeout = 6 * time.Second
	full := []step{}
	for i := uint8(1); i <= 7; i++ {
		full = append(full, step{op: "alloc", eid: 9, owner: ClientID(i), tag: i})
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"allocate and route the reply", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "alloc", eid: 9, owner: 2, tag: 2},
			{op: "count", n: 2},
			{op: "match", eid: 9, tag: 2, owner: 2, ok: true},
			{op: "match", eid: 9, tag: 2, ok: false},  // answered once
			{op: "match", eid: 10, tag: 1, ok: false}, // another EID's tag 1
			{op: "match", eid: 9, tag: 0, ok: false},  // libmctp's tag
			{op: "match", eid: 9, tag: 1, owner: 1, ok: true},
			{op: "count", n: 0},
		}},
		{"round robin skips recent tags", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "match", eid: 9, tag: 1, owner: 1, ok: true},
			{op: "alloc", eid: 9, owner: 1, tag: 2},
			{op: "alloc", eid: 10, owner: 1, tag: 1}, // per destination
		}},
		{"exhaustion", append(append([]step{}, full...),
			step{op: "alloc", eid: 9, owner: 8, tag: 0},
			step{op: "alloc", eid: 10, owner: 8, tag: 1},
			step{op: "match", eid: 9, tag: 4, owner: 4, ok: true},
			step{op: "alloc", eid: 9, owner: 8, tag: 4},
			step{op: "alloc", eid: 9, owner: 8, tag: 0},
		)},
		{"expiry", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "wait", wait: timeout - time.Millisecond},
			{op: "alloc", eid: 9, owner: 2, tag: 2},
			{op: "count", n: 2},
			{op: "wait", wait: time.Millisecond},
			{op: "count", n: 1},
			{op: "match", eid: 9, tag: 1, ok: false},
			{op: "match", eid: 9, tag: 2, owner: 2, ok: true},
		}},
		{"expired tags are reused when full", append(append([]step{}, full...),
			step{op: "wait", wait: timeout},
			step{op: "alloc", eid: 9, owner: 9, tag: 1},
			step{op: "count", n: 1},
		)},
		{"owner disconnect", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "alloc", eid: 10, owner: 1, tag: 1},
			{op: "alloc", eid: 9, owner: 2, tag: 2},
			{op: "gone", owner: 1, n: 2},
			{op: "gone", owner: 1, n: 0},
			{op: "count", n: 1},
			// The response still matches, with no owner: it is dropped,
			// not handed to other clients.
			{op: "match", eid: 9, tag: 1, owner: 0, ok: true},
			{op: "match", eid: 9, tag: 1, ok: false},
			{op: "match", eid: 9, tag: 2, owner: 2, ok: true},
		}},
		{"a gone owner's tag is free at once", append(append([]step{}, full...),
			step{op: "gone", owner: 3, n: 1},
			step{op: "count", n: 6},
			step{op: "alloc", eid: 9, owner: 8, tag: 3},
			step{op: "alloc", eid: 9, owner: 8, tag: 0},
			step{op: "match", eid: 9, tag: 3, owner: 8, ok: true},
		)},
		{"release after a failed send", []step{
			{op: "alloc", eid: 9, owner: 1, tag: 1},
			{op: "release", eid: 9, tag: 1},
			{op: "match", eid: 9, tag: 1, ok: false},
			{op: "count", n: 0},
		}},
		{"broadcast and null requests match any source until expiry", []step{
			{op: "alloc", eid: 0xff, owner: 1, tag: 1},
			{op: "alloc", eid: 0, owner: 2, tag: 2}, // same key as broadcast
			{op: "match", eid: 9, tag: 1, owner: 1, ok: true},
			{op: "match", eid: 10, tag: 1, owner: 1, ok: true},
			{op: "match", eid: 12, tag: 2, owner: 2, ok: true},
			{op: "alloc", eid: 9, owner: 3, tag: 1},
			{op: "match", eid: 9, tag: 1, owner: 3, ok: true}, // the exact EID first
			{op: "wait", wait: timeout},
			{op: "match", eid: 10, tag: 1, ok: false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			tags := NewTags(TagOptions{Timeout: timeout, Now: func() time.Time { return now }})
			for i, s := range tc.steps {
				switch s.op {
				case "alloc":
					tag, err := tags.Alloc(s.eid, s.owner)
					if s.tag == 0 {
						if !errors.Is(err, ErrNoTag) {
							t.Fatalf("step %d: alloc to %d: tag %d %v, want ErrNoTag", i, s.eid, tag, err)
						}
					} else if err != nil || tag != s.tag {
						t.Fatalf("step %d: alloc to %d: tag %d %v, want %d", i, s.eid, tag, err, s.tag)
					}
				case "match":
					owner, ok := tags.Match(s.eid, s.tag)
					if ok != s.ok || (ok && owner != s.owner) {
						t.Fatalf("step %d: match %d tag %d: %d %v, want %d %v", i, s.eid, s.tag, owner, ok, s.owner, s.ok)
					}
				case "release":
					tags.Release(s.eid, s.tag)
				case "gone":
					if n := tags.ReleaseOwner(s.owner); n != s.n {
						t.Fatalf("step %d: released %d, want %d", i, n, s.n)
					}
				case "wait":
					now = now.Add(s.wait)
				case "count":
					if n := tags.Outstanding(); n != s.n {
						t.Fatalf("step %d: outstanding %d, want %d", i, n, s.n)
					}
				}
			}
		})
	}
}
