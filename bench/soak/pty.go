package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pty is one pseudo-terminal: the master the relay reads and writes,
// and the slave's path linked at a stable name for mctpd to open.
type pty struct {
	master *os.File
	// hold keeps a descriptor of the slave open, so that the master
	// does not read EIO while mctpd has the slave closed (between its
	// reopens); closing the master still hangs up every slave.
	hold *os.File
	link string
}

// openPTY opens a pty in raw mode (no echo, no translation: what socat's
// pty,raw,echo=0 does) and points link at its slave, replacing what was
// there in one rename, so that mctpd never opens a stale path.
func openPTY(link string) (*pty, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("pty number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	hold, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	p := &pty{master: master, hold: hold, link: link}
	if err := p.raw(); err != nil {
		p.close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		p.close()
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		p.close()
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return p, nil
}

// raw sets the slave's termios as cfmakeraw does.
func (p *pty) raw() error {
	fd := int(p.hold.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	return nil
}

// close closes both ends: every slave descriptor (mctpd's) hangs up.
func (p *pty) close() {
	p.master.Close()
	p.hold.Close()
}

// relay joins two ptys back to back, as `socat pty pty` does: two
// serial ports wired to each other. pull takes the line away in the
// middle of a frame going from a to b and restore puts new ptys behind
// the same names.
type relay struct {
	dirA, dirB string // the link names
	mu         sync.Mutex
	a, b       *pty
	wg         sync.WaitGroup
	// cut, when set, asks the a→b copier to stop in the middle of the
	// next frame; it reports through cutDone.
	cut     chan struct{}
	cutDone chan cutReport
}

// cutReport says where the line was pulled.
type cutReport struct {
	At     time.Time
	Passed int // bytes of the cut chunk passed on (header and half the packet)
	Held   int // bytes of it never passed on
}

func newRelay(linkA, linkB string) (*relay, error) {
	r := &relay{dirA: linkA, dirB: linkB}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *relay) open() error {
	a, err := openPTY(r.dirA)
	if err != nil {
		return err
	}
	b, err := openPTY(r.dirB)
	if err != nil {
		a.close()
		return err
	}
	r.mu.Lock()
	r.a, r.b = a, b
	r.cut = make(chan struct{})
	r.cutDone = make(chan cutReport, 1)
	cut, done := r.cut, r.cutDone
	r.mu.Unlock()
	r.wg.Add(2)
	go func() { defer r.wg.Done(); copyCut(b.master, a.master, cut, done) }()
	go func() { defer r.wg.Done(); copyCut(a.master, b.master, nil, nil) }()
	return nil
}

// copyCut copies src to dst until either fails. Once cut is closed, it
// passes on the next chunk only up to the middle of a frame, reports,
// and returns.
func copyCut(dst, src *os.File, cut <-chan struct{}, done chan<- cutReport) {
	buf := make([]byte, 4096)
	var fc frameCutter
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			cutting := false
			if cut != nil {
				select {
				case <-cut:
					cutting = true
				default:
				}
			}
			if cutting {
				if k := fc.Cut(chunk); k >= 0 {
					dst.Write(chunk[:k])
					done <- cutReport{At: time.Now(), Passed: k, Held: n - k}
					return
				}
			} else {
				// Follow the stream so that a cut knows where frames are.
				for off := 0; off < len(chunk); {
					k := fc.Cut(chunk[off:])
					if k < 0 {
						break
					}
					off += k
				}
			}
			if _, err := dst.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pull waits until a frame is under way from a to b, passes on half of
// it, and closes both ptys and removes their names: mctpd on either side
// reads a hangup (EIO), the receiving one in the middle of a frame. It
// gives up after timeout without a frame to cut, still pulling the line.
func (r *relay) pull(timeout time.Duration) (cutReport, error) {
	r.mu.Lock()
	a, b, cut, done := r.a, r.b, r.cut, r.cutDone
	r.mu.Unlock()
	close(cut)
	var rep cutReport
	var err error
	select {
	case rep = <-done:
		// Let the receiving mctpd read the half frame before the
		// hangup, so that its deframer is left in the middle of it.
		time.Sleep(hangupDelay)
	case <-time.After(timeout):
		err = fmt.Errorf("no frame from %s to %s within %v to cut", r.dirA, r.dirB, timeout)
	}
	os.Remove(r.dirA)
	os.Remove(r.dirB)
	a.close()
	b.close()
	r.wg.Wait()
	return rep, err
}

// hangupDelay is how long the half frame sits in the receiver's pty
// before the hangup: mctpd reads a pty as soon as bytes arrive.
const hangupDelay = 300 * time.Millisecond

// restore opens new ptys under the same names.
func (r *relay) restore() error { return r.open() }

// close ends the relay.
func (r *relay) close() {
	r.mu.Lock()
	a, b := r.a, r.b
	r.mu.Unlock()
	if a != nil {
		a.close()
		b.close()
	}
	r.wg.Wait()
	os.Remove(r.dirA)
	os.Remove(r.dirB)
}
