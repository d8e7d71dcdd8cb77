package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tickbox-fw/tickbox/services/ptpd/instance"
)

// StatsTimeLayout is sfptpd's log time stamp: local time with
// microseconds.
const StatsTimeLayout = "2006-01-02 15:04:05.000000"

// clockTimeLayout is how json_stats spells a clock's reading: seconds in
// local time, then nine digits of nanoseconds.
const clockTimeLayout = "2006-01-02 15:04:05.000000000"

// systemClock is the system clock's name; sfptpd names no interface for
// it.
const systemClock = "system"

// HasRTStats reports whether an instance has a realtime stats entry,
// the thing both stats logs print: sfptpd's PTP and NTP modules post one
// only while they are slaves of a remote reference, and freerun never
// does.
func HasRTStats(st instance.Status) bool {
	return (st.Source != "" || st.MasterClock != "") && st.State == instance.Slave
}

// hasFreqAdj: PTP ports and clock-to-clock servos report the frequency
// adjustment; sfptpd's NTP module reports only the offset.
func hasFreqAdj(st instance.Status) bool { return st.PTP != nil || st.MasterClock != "" }

// shortClockName turns sfptpd's long clock name "phc0(eth0)" into its
// short name "phc0".
func shortClockName(long string) string {
	if i := strings.IndexByte(long, '('); i > 0 {
		return long[:i]
	}
	return long
}

// masterName is the entry's master: the local master clock when there
// is one, else the module's source ("gm", "ntp").
func masterName(st instance.Status, short bool) string {
	if st.MasterClock != "" {
		if short {
			return shortClockName(st.MasterClock)
		}
		return st.MasterClock
	}
	return st.Source
}

// marker is the arrow between master and slave in a text stats line:
// "-#" when block_clock stops the instance disciplining, "->" while it
// disciplines its clock, "--" otherwise (a slave that only measures).
func marker(st instance.Status, blocked bool) string {
	switch {
	case blocked:
		return "-#"
	case st.Disciplining:
		return "->"
	}
	return "--"
}

// float3 is sfptpd's SFPTPD_FORMAT_FLOAT ("%0.3Lf"), with C's spelling
// of the non-finite values.
func float3(f float64) string { return cFloat(f, 3) }

// StatsLine formats one text stats line as sfptpd's stats renderer
// does:
//
//	2024-03-16 19:39:42.114315 [ptp1:gm->phc0(eth0)], offset: 64.219, freq-adj: -1132.022, in-sync: 1, one-way-delay: 512.000, parent-id: 0011:22ff:fe33:4455, gm-id: 0011:22ff:fe33:4455
//
// blocked says block_clock keeps the instance from its clock. Only
// instances with HasRTStats have lines.
func StatsLine(t time.Time, st instance.Status, blocked bool) string {
	var b strings.Builder
	b.WriteString(t.Format(StatsTimeLayout))
	b.WriteString(" [")
	if st.Name != "" {
		b.WriteString(st.Name)
		b.WriteByte(':')
	}
	b.WriteString(masterName(st, true))
	b.WriteString(marker(st, blocked))
	if st.ActiveInterface != "" {
		fmt.Fprintf(&b, "%s(%s)", shortClockName(st.Clock), st.ActiveInterface)
	} else {
		b.WriteString(st.Clock)
	}
	b.WriteString("], ")
	sep := ""
	kv := func(k, v string) {
		b.WriteString(sep)
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		sep = ", "
	}
	kv("offset", float3(st.OffsetNS))
	if hasFreqAdj(st) {
		kv("freq-adj", float3(st.FreqAdjPPB))
	}
	in := "0"
	if st.InSync {
		in = "1"
	}
	kv("in-sync", in)
	if st.PTP != nil {
		kv("one-way-delay", float3(st.PathDelayNS))
		kv("parent-id", st.ParentID)
		kv("gm-id", st.GrandmasterID)
	}
	b.WriteByte('\n')
	return b.String()
}

// jsonFloat is sfptpd's "%Lf": six decimals. JSON has no spelling for
// NaN or infinity; such a value is left out (see jsonStat).
func jsonFloat(b []byte, f float64) []byte { return strconv.AppendFloat(b, f, 'f', 6, 64) }

func jsonString(b []byte, s string) []byte { return strconv.AppendQuote(b, s) }

// JSONStatsLine formats one json_stats line with sfptpd's keys, key
// order and number formats (sfptpd's realtime stats JSON renderer):
//
//	{"instance":"ptp1","time":"2025-06-01 12:00:00.123456","clock-master":{"name":"gm"},
//	 "clock-slave":{"name":"phc0(eth0)","primary-interface":"eth0"},"is-disciplining":true,
//	 "in-sync":true,"alarms":[],"stats":{"offset":-3.250000,"freq-adj":1204.113000,
//	 "one-way-delay":512.000000,"parent-id":"…","gm-id":"…","active-interface":"eth0",
//	 "p-term":1.950000,"i-term":1202.163000}}
//
// clock-master carries time and primary-interface only for a local
// master clock; a clock other than the system clock names its primary
// interface. Clock readings are shown in t's location (local time in
// the daemon).
func JSONStatsLine(t time.Time, st instance.Status) []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"instance":`...)
	b = jsonString(b, st.Name)
	b = append(b, `,"time":`...)
	b = jsonString(b, t.Format(StatsTimeLayout))
	b = append(b, `,"clock-master":{"name":`...)
	b = jsonString(b, masterName(st, false))
	if st.MasterClock != "" {
		if !st.MasterTime.IsZero() {
			b = append(b, `,"time":`...)
			b = jsonString(b, st.MasterTime.In(t.Location()).Format(clockTimeLayout))
		}
		if st.MasterClock != systemClock {
			b = append(b, `,"primary-interface":`...)
			b = jsonString(b, clockInterface(st.MasterClock))
		}
	}
	b = append(b, `},"clock-slave":{"name":`...)
	b = jsonString(b, st.Clock)
	if !st.SlaveTime.IsZero() {
		b = append(b, `,"time":`...)
		b = jsonString(b, st.SlaveTime.In(t.Location()).Format(clockTimeLayout))
	}
	if st.Clock != systemClock {
		b = append(b, `,"primary-interface":`...)
		iface := clockInterface(st.Clock)
		if iface == "" {
			iface = st.Interface
		}
		b = jsonString(b, iface)
	}
	b = append(b, `},"is-disciplining":`...)
	b = strconv.AppendBool(b, st.Disciplining)
	b = append(b, `,"in-sync":`...)
	b = strconv.AppendBool(b, st.InSync)
	b = append(b, `,"alarms":[`...)
	for i, a := range instance.SortAlarms(st.Alarms) {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonString(b, a)
	}
	b = append(b, `],"stats":{`...)
	first := true
	num := func(k string, f float64) {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonString(b, k)
		b = append(b, ':')
		b = jsonFloat(b, f)
	}
	str := func(k, v string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonString(b, k)
		b = append(b, ':')
		b = jsonString(b, v)
	}
	num("offset", st.OffsetNS)
	if hasFreqAdj(st) {
		num("freq-adj", st.FreqAdjPPB)
	}
	if st.PTP != nil {
		num("one-way-delay", st.PathDelayNS)
		str("parent-id", st.ParentID)
		str("gm-id", st.GrandmasterID)
	}
	if st.ActiveInterface != "" {
		str("active-interface", st.ActiveInterface)
	}
	if st.HasPI {
		num("p-term", st.PTerm)
		num("i-term", st.ITerm)
	}
	return append(b, "}}\n"...)
}

// clockInterface is the interface in a long clock name "phc0(eth0)";
// "" when the name has none.
func clockInterface(long string) string {
	i := strings.IndexByte(long, '(')
	if i < 0 || !strings.HasSuffix(long, ")") {
		return ""
	}
	return long[i+1 : len(long)-1]
}

// finite turns NaN and infinities into 0 for outputs that have no
// spelling for them (the control replies).
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// writeStats writes the stats logs for one interval: a text line and a
// json_stats line for each instance with a realtime stats entry, all
// stamped with the interval's time as sfptpd stamps a batch.
func (e *Engine) writeStats(now time.Time, snaps []snapshot) {
	l := e.opts.Logs
	if l == nil {
		return
	}
	for _, s := range snaps {
		if !s.running || !HasRTStats(s.st) {
			continue
		}
		if l.Stats != nil {
			if _, err := l.Stats.Write([]byte(StatsLine(now, s.st, s.blocked))); err != nil {
				e.log.Error("stats_log write failed", "err", err)
			}
		}
		if l.JSON != nil {
			if _, err := l.JSON.Write(JSONStatsLine(now, s.st)); err != nil {
				e.log.Error("json_stats write failed", "err", err)
			}
		}
	}
}
