package binding

import "testing"

// TestRoomSignal: Wake closes the channel taken before it, and only
// that one; a Wake with nobody waiting is a no-op.
func TestRoomSignal(t *testing.T) {
	var r RoomSignal
	r.Wake() // nobody waits
	a := r.Wait()
	if b := r.Wait(); a != b {
		t.Fatal("two waits before a wake got different channels")
	}
	select {
	case <-a:
		t.Fatal("closed before Wake")
	default:
	}
	r.Wake()
	select {
	case <-a:
	default:
		t.Fatal("Wake did not close the channel")
	}
	c := r.Wait()
	select {
	case <-c:
		t.Fatal("a wait after Wake got a closed channel")
	default:
	}
}
