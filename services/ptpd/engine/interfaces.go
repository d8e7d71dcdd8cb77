package engine

import (
	"fmt"
	"net"
	"sort"

	"golang.org/x/sys/unix"
)

// SystemInterfaces lists the host's network interfaces with a hardware
// address (sfptpd lists the interfaces it can time-stamp on, so the
// loopback is left out), with their time stamping capabilities from
// the kernel (ETHTOOL_GET_TS_INFO). An interface whose capabilities
// cannot be read is listed with "-".
func SystemInterfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	var out []Interface
	for _, in := range ifs {
		if in.Flags&net.FlagLoopback != 0 || len(in.HardwareAddr) == 0 {
			continue
		}
		i := Interface{Name: in.Name, PTPCaps: "-", RxTimestampCaps: "-", MAC: in.HardwareAddr}
		if ts, err := unix.IoctlGetEthtoolTsInfo(fd, in.Name); err == nil {
			i.PTPCaps, i.RxTimestampCaps = tsCaps(ts.So_timestamping, ts.Phc_index)
		}
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// capsWords are sfptpd's capability words, indexed by sw (bit 0) and
// hw (bit 1).
var capsWords = [4]string{"-", "sw", "hw", "hw & sw"}

// tsCaps turns SO_TIMESTAMPING capabilities into sfptpd's words: PTP
// needs transmit and receive stamps (and a PHC for hardware ones), the
// packet time stamping column is about receive stamps only.
func tsCaps(flags uint32, phc int32) (ptp, rx string) {
	has := func(m uint32) bool { return flags&m == m }
	var p, r int
	if has(unix.SOF_TIMESTAMPING_TX_SOFTWARE | unix.SOF_TIMESTAMPING_RX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE) {
		p |= 1
	}
	if phc >= 0 && has(unix.SOF_TIMESTAMPING_TX_HARDWARE|unix.SOF_TIMESTAMPING_RX_HARDWARE|unix.SOF_TIMESTAMPING_RAW_HARDWARE) {
		p |= 2
	}
	if has(unix.SOF_TIMESTAMPING_RX_SOFTWARE) {
		r |= 1
	}
	if has(unix.SOF_TIMESTAMPING_RX_HARDWARE | unix.SOF_TIMESTAMPING_RAW_HARDWARE) {
		r |= 2
	}
	return capsWords[p], capsWords[r]
}
