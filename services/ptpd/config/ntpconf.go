package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ntpFallback fills the servers of an ntp or crny instance that names
// none from the server and pool lines of the first candidate file that
// exists. Finding none is not an error: the instance reports an alarm at
// run time, and a warning here lets "ptpd -t" say so.
func (p *parser) ntpFallback(in *Instance, opts Options) {
	files := opts.NTPConfFiles
	if files == nil {
		files = DefaultNTPConfFiles
	}
	warn := func(format string, a ...any) {
		p.cfg.Warnings = append(p.cfg.Warnings, Warning{File: p.cfg.File, Line: in.Line, Section: in.Name, Msg: fmt.Sprintf(format, a...)})
	}
	for _, f := range files {
		data, err := readBounded(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			warn("%s instance '%s': cannot read %s: %v", in.Module, in.Name, f, err)
			continue
		}
		in.NTPServers = serversOf(data)
		in.NTPServersFrom = f
		if len(in.NTPServers) == 0 {
			warn("%s instance '%s' has no ntp_server and %s names no server or pool: it has no NTP server", in.Module, in.Name, f)
		}
		return
	}
	if len(files) == 0 {
		warn("%s instance '%s' has no ntp_server: it has no NTP server", in.Module, in.Name)
		return
	}
	warn("%s instance '%s' has no ntp_server and none of %s exists: it has no NTP server", in.Module, in.Name, strings.Join(files, ", "))
}

// serversOf returns the hosts of the server and pool lines of an
// ntp.conf or chrony.conf, skipping ntpd's local reference clock
// pseudo-addresses (127.127.t.u), which are not NTP servers.
func serversOf(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxLine)
	for sc.Scan() && len(out) < maxServers {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.ContainsRune("#;!%", rune(t[0])) {
			continue
		}
		f := strings.Fields(t)
		if len(f) < 2 || f[0] != "server" && f[0] != "pool" {
			continue
		}
		host := f[1]
		if strings.HasPrefix(host, "127.127.") || hostPort(host) != nil || contains(out, host) {
			continue
		}
		out = append(out, host)
	}
	return out
}
