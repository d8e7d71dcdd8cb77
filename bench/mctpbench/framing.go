package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tickbox-fw/tickbox/services/mctpd/serial"
)

// framingPair is two serial.Binding on the two ends of a socat pty pair,
// in this process: DSP0253 encoding, the binding's send queue and batched
// writes (a message's packets queued in one SendBatch, as the router
// queues them), its reads and deframing, and nothing else (no router,
// reassembly, demux or daemons). It measures what the target calls
// framing overhead.
type framingPair struct {
	mtu     int
	tx, rx  *serial.Binding
	cancel  context.CancelFunc
	done    chan struct{}
	packets atomic.Int64 // packets delivered to rx
	bytes   atomic.Int64 // payload bytes delivered to rx
	bad     atomic.Int64 // packets of an unexpected length
	// msgs is signalled once per EOM packet delivered.
	msgs chan struct{}
}

// framingMessage is the payload a framing row moves per message: the
// 4 KiB the target names.
const framingMessage = 4096

func startFraming(a, b string, mtu int) (*framingPair, error) {
	log := slog.New(slog.DiscardHandler)
	tx, err := serial.NewMTU(a, 0, mtu, log)
	if err != nil {
		return nil, err
	}
	rx, err := serial.NewMTU(b, 0, mtu, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &framingPair{mtu: mtu, tx: tx, rx: rx, cancel: cancel, done: make(chan struct{}),
		msgs: make(chan struct{}, framingWindow(mtu)+1)}
	go func() {
		defer close(f.done)
		go tx.Run(ctx, func([]byte) {})
		rx.Run(ctx, f.deliver)
	}()
	return f, nil
}

func (f *framingPair) close() {
	f.cancel()
	<-f.done
}

// deliver counts one received packet; the EOM flag ends a message.
func (f *framingPair) deliver(pkt []byte) {
	if len(pkt) < 4 || len(pkt)-4 > f.mtu {
		f.bad.Add(1)
		return
	}
	f.packets.Add(1)
	f.bytes.Add(int64(len(pkt) - 4))
	if pkt[3]&0x40 != 0 {
		f.msgs <- struct{}{}
	}
}

// framingPackets splits one framingMessage-byte payload into MCTP
// packets of at most mtu payload bytes, as the router would.
func framingPackets(mtu int) [][]byte {
	var pkts [][]byte
	n := (framingMessage + mtu - 1) / mtu
	for i := range n {
		part := min(mtu, framingMessage-i*mtu)
		flags := byte(i&3) << 4
		if i == 0 {
			flags |= 0x80
		}
		if i == n-1 {
			flags |= 0x40
		}
		p := append(make([]byte, 0, 4+part), 1, farEID, localEID, flags)
		for j := range part {
			p = append(p, byte(i*mtu+j))
		}
		pkts = append(pkts, p)
	}
	return pkts
}

// framingWindow keeps a quarter of the binding's send queue in flight,
// as serialWindow does for the daemons.
func framingWindow(mtu int) int {
	return max(1, serialQueueQuarter(mtu)/len(framingPackets(mtu)))
}

// send queues one message's packets with SendBatch, as the router does;
// a full queue (which the window should prevent) is retried after a
// short pause rather than counted.
func (f *framingPair) send(pkts [][]byte) error {
	for {
		err := f.tx.SendBatch(pkts)
		if err == nil {
			return nil
		}
		if !errors.Is(err, serial.ErrQueueFull) && !errors.Is(err, serial.ErrLinkDown) {
			return err
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// warm waits until a message crosses the pair (the ports open in the
// background).
func (f *framingPair) warm(stall time.Duration) error {
	pkts := framingPackets(f.mtu)
	deadline := time.Now().Add(stall + 5*time.Second)
	for time.Now().Before(deadline) {
		if err := f.send(pkts); err != nil {
			return err
		}
		select {
		case <-f.msgs:
			// Drain anything a retry left in flight.
			for {
				select {
				case <-f.msgs:
				case <-time.After(100 * time.Millisecond):
					return nil
				}
			}
		case <-time.After(300 * time.Millisecond):
		}
	}
	return fmt.Errorf("framing MTU %d: no message came through", f.mtu)
}

// measure sends messages for d, window messages in flight, and returns
// the payload delivered. Every message must arrive whole.
func (f *framingPair) measure(d, stall time.Duration) (sample, error) {
	pkts := framingPackets(f.mtu)
	window := framingWindow(f.mtu)
	startBytes, startPkts, startBad := f.bytes.Load(), f.packets.Load(), f.bad.Load()
	start := time.Now()
	deadline := start.Add(d)
	sent, recvd, inflight := 0, 0, 0
	var last time.Time
	timer := time.NewTimer(stall)
	defer timer.Stop()
	for time.Now().Before(deadline) || inflight > 0 {
		if inflight < window && time.Now().Before(deadline) {
			if err := f.send(pkts); err != nil {
				return sample{}, err
			}
			sent++
			inflight++
			continue
		}
		timer.Reset(stall)
		select {
		case <-f.msgs:
			recvd++
			inflight--
			last = time.Now()
		case <-timer.C:
			return sample{}, fmt.Errorf("framing MTU %d: stalled with %d of %d messages received", f.mtu, recvd, sent)
		}
	}
	payload := f.bytes.Load() - startBytes
	if bad := f.bad.Load() - startBad; bad != 0 {
		return sample{}, fmt.Errorf("framing MTU %d: %d packets of a wrong length", f.mtu, bad)
	}
	if want := int64(sent) * framingMessage; payload != want || f.packets.Load()-startPkts != int64(sent*len(pkts)) {
		return sample{}, fmt.Errorf("framing MTU %d: %d payload bytes in %d packets, want %d in %d", f.mtu, payload, f.packets.Load()-startPkts, want, sent*len(pkts))
	}
	return sample{msgs: recvd, bytes: payload, elapsed: last.Sub(start)}, nil
}
