package ptp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/facebook/time/timestamp"
	"golang.org/x/sys/unix"
)

// ptpMulticast is the PTP primary multicast group (IEEE 1588 annex C).
var ptpMulticast = net.IPv4(224, 0, 1, 129)

// maxPacket is the receive buffer: PTP messages are under 100 bytes with
// the TLVs we read; anything longer than an Ethernet frame is truncated
// and then rejected by length checks.
const maxPacket = 1536

// transport sends and receives a port's messages. The UDP one is below;
// tests use an in-memory one.
type transport interface {
	// sendEvent sends to port 319 and returns the transmit timestamp
	// as the kernel or NIC took it.
	sendEvent(b []byte) (time.Time, error)
	// sendGeneral sends to port 320.
	sendGeneral(b []byte) error
	// run delivers received packets until ctx ends or a socket fails.
	run(ctx context.Context, out chan<- packet) error
	close() error
}

// packet is one received datagram. ts is the receive timestamp (zero
// for general messages, which need none).
type packet struct {
	event bool
	b     []byte
	ts    time.Time
}

// udpTransport is a port's pair of UDPv4 sockets, bound to one interface
// so that several ports (one per interface) share ports 319 and 320 in
// one process.
type udpTransport struct {
	iface   *net.Interface
	hw      bool
	event   *net.UDPConn
	general *net.UDPConn
	evFd    int
	// txFd sends event messages. It is a plain blocking socket outside
	// the runtime's poller on purpose: the kernel queues a software
	// transmit timestamp on the sending socket and wakes its waiters
	// before it hands the packet to the peer, so a socket that a
	// poller thread sleeps on (the receiving event socket) would put
	// that wake-up, microseconds, between our timestamp and the wire.
	txFd   int
	txAddr unix.SockaddrInet4
	dstGen *net.UDPAddr
	oob    []byte
	toob   []byte
}

// openUDP opens and configures both sockets.
func openUDP(iface *net.Interface, hw bool) (*udpTransport, error) {
	t := &udpTransport{
		iface:  iface,
		hw:     hw,
		dstGen: &net.UDPAddr{IP: ptpMulticast, Port: 320},
		oob:    make([]byte, timestamp.ControlSizeBytes),
		toob:   make([]byte, timestamp.ControlSizeBytes),
	}
	var err error
	if t.event, err = listen(iface, 319); err != nil {
		return nil, err
	}
	if t.general, err = listen(iface, 320); err != nil {
		t.event.Close()
		return nil, err
	}
	t.txFd = -1
	if t.evFd, err = timestamp.ConnFd(t.event); err != nil {
		t.close()
		return nil, fmt.Errorf("event socket: %w", err)
	}
	rxTS, txTS := timestamp.SWRX, timestamp.SW
	if hw {
		rxTS, txTS = timestamp.HWRX, timestamp.HW
	}
	if err := timestamp.EnableTimestamps(rxTS, t.evFd, iface); err != nil {
		t.close()
		return nil, fmt.Errorf("%s: %w", iface.Name, err)
	}
	if t.txFd, err = txSocket(iface); err != nil {
		t.close()
		return nil, err
	}
	if err := timestamp.EnableTimestamps(txTS, t.txFd, iface); err != nil {
		t.close()
		return nil, fmt.Errorf("%s: %w", iface.Name, err)
	}
	t.txAddr = unix.SockaddrInet4{Port: 319}
	copy(t.txAddr.Addr[:], ptpMulticast.To4())
	return t, nil
}

// txSocket opens the send-only event socket: an ephemeral port, bound to
// the interface, multicasting there with loopback off.
func txSocket(iface *net.Interface) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("event send socket: %w", err)
	}
	err = unix.BindToDevice(fd, iface.Name)
	if err == nil {
		err = unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(iface.Index)})
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0)
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: event send socket: %w", iface.Name, err)
	}
	return fd, nil
}

// listen opens one socket on port, bound to the interface, joined to the
// PTP group there and sending there with loopback off (a port must not
// hear itself).
func listen(iface *net.Interface, port int) (*net.UDPConn, error) {
	var serr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			if serr = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", serr)
				return
			}
			if serr = unix.BindToDevice(s, iface.Name); serr != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", iface.Name, serr)
				return
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("%s: listening on port %d: %w", iface.Name, port, err)
	}
	conn := pc.(*net.UDPConn)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if serr = timestamp.JoinMulticast(s, iface, ptpMulticast); serr != nil {
			return
		}
		mreq := &unix.IPMreqn{Ifindex: int32(iface.Index)}
		if serr = unix.SetsockoptIPMreqn(s, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); serr != nil {
			serr = fmt.Errorf("IP_MULTICAST_IF: %w", serr)
			return
		}
		if serr = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0); serr != nil {
			serr = fmt.Errorf("IP_MULTICAST_LOOP: %w", serr)
			return
		}
		if serr = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1); serr != nil {
			serr = fmt.Errorf("IP_MULTICAST_TTL: %w", serr)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: port %d: %w", iface.Name, port, err)
	}
	return conn, nil
}

func (t *udpTransport) sendEvent(b []byte) (time.Time, error) {
	if err := unix.Sendto(t.txFd, b, 0, &t.txAddr); err != nil {
		return time.Time{}, fmt.Errorf("sending event message: %w", err)
	}
	ts, _, err := timestamp.ReadTXtimestampBuf(t.txFd, t.oob, t.toob)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", errNoTXTimestamp, err)
	}
	return ts, nil
}

func (t *udpTransport) sendGeneral(b []byte) error {
	if _, err := t.general.WriteToUDP(b, t.dstGen); err != nil {
		return fmt.Errorf("sending general message: %w", err)
	}
	return nil
}

// run reads both sockets. The event socket is read with recvmsg through
// the runtime poller so its timestamps come along; general messages need
// none.
func (t *udpTransport) run(ctx context.Context, out chan<- packet) error {
	errc := make(chan error, 2)
	go func() { errc <- t.readGeneral(ctx, out) }()
	go func() { errc <- t.readEvent(ctx, out) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			t.close() // stops the other reader
		}
	}
	return first
}

func deliver(ctx context.Context, out chan<- packet, p packet) bool {
	select {
	case out <- p:
		return true
	case <-ctx.Done():
		return false
	}
}

func (t *udpTransport) readGeneral(ctx context.Context, out chan<- packet) error {
	buf := make([]byte, maxPacket)
	for {
		n, _, err := t.general.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading general socket: %w", err)
		}
		if !deliver(ctx, out, packet{b: append([]byte(nil), buf[:n]...)}) {
			return nil
		}
	}
}

func (t *udpTransport) readEvent(ctx context.Context, out chan<- packet) error {
	rc, err := t.event.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, maxPacket)
	oob := make([]byte, timestamp.ControlSizeBytes)
	for {
		var n, boob int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, boob, _, rerr = timestamp.ReadPacketWithCMsgBuf(int(fd), buf, oob)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading event socket: %w", err)
		}
		ts, err := timestamp.ReadRXTimestamp(oob, boob)
		if err != nil {
			// Delivered without a timestamp: the port counts and
			// drops it rather than use a wrong time.
			ts = time.Time{}
		}
		if !deliver(ctx, out, packet{event: true, b: append([]byte(nil), buf[:n]...), ts: ts}) {
			return nil
		}
	}
}

func (t *udpTransport) close() error {
	var errs []error
	if t.event != nil {
		errs = append(errs, t.event.Close())
	}
	if t.general != nil {
		errs = append(errs, t.general.Close())
	}
	if t.txFd >= 0 {
		errs = append(errs, unix.Close(t.txFd))
		t.txFd = -1
	}
	return errors.Join(errs...)
}

// tsInfo is what ethtool says about an interface's timestamping.
type tsInfo struct {
	hwTX, hwRX bool
	phcIndex   int
}

// interfaceTSInfo queries ethtool's timestamping info (ETHTOOL_GET_TS_INFO).
func interfaceTSInfo(iface string) (tsInfo, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return tsInfo{}, fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolTsInfo(fd, iface)
	if err != nil {
		return tsInfo{}, fmt.Errorf("%s: ethtool timestamping info: %w", iface, err)
	}
	return tsInfo{
		hwTX:     info.So_timestamping&unix.SOF_TIMESTAMPING_TX_HARDWARE != 0,
		hwRX:     info.So_timestamping&unix.SOF_TIMESTAMPING_RX_HARDWARE != 0,
		phcIndex: int(info.Phc_index),
	}, nil
}

// hardwareCapable reports whether iface can timestamp in hardware, and
// its PHC.
func hardwareCapable(iface string) (bool, string) {
	info, err := interfaceTSInfo(iface)
	if err != nil || !info.hwTX || !info.hwRX || info.phcIndex < 0 {
		return false, ""
	}
	return true, fmt.Sprintf("/dev/ptp%d", info.phcIndex)
}
