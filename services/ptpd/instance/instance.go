// Package instance is the contract between ptpd's sync modules (the PTP
// port in package ptp, freerun) and the sfptpd-compatible engine that
// selects between them, logs their statistics and serves the control
// commands.
package instance

import (
	"context"
	"time"
)

// State is a sync instance's state, named as sfptpd and IEEE 1588 name
// port states.
type State int

// States, in IEEE 1588's order.
const (
	Initializing State = iota
	Faulty
	Disabled
	Listening
	PreMaster
	Master
	Passive
	Uncalibrated
	Slave
	Freerun
)

var stateNames = [...]string{"initializing", "faulty", "disabled", "listening", "pre-master", "master", "passive", "uncalibrated", "slave", "freerun"}

// String returns the lower-case name used in instances-get and logs.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText encodes the state as its lower-case name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Status is a snapshot of an instance, with everything the selection
// rules, instances-get, the stats log and json_stats need.
type Status struct {
	Name   string // instance name from the config section ("ptp1")
	Module string // "ptp" or "freerun"
	// Interface is the configured interface ("" for freerun).
	Interface string
	State     State
	// Alarms are alarm names, sfptpd's where sfptpd has the condition
	// (the Alarm* constants); empty means none. Writers put them in
	// sfptpd's order with SortAlarms.
	Alarms []string
	// InSync is true once the offset has stayed within the servo's
	// convergence threshold.
	InSync bool
	// Disciplining is true while this instance adjusts its clock (it is
	// selected and clock control allows it).
	Disciplining bool
	// Clock is the local clock's name ("phc0(eth0)", "system").
	Clock string
	// OffsetNS is the offset from the master (local minus master).
	OffsetNS float64
	// FreqAdjPPB is the frequency correction applied to the clock.
	FreqAdjPPB float64
	// PathDelayNS is the filtered one-way path delay.
	PathDelayNS float64
	// ParentID and GrandmasterID are clock identities in sfptpd's form
	// "0011:22ff:fe33:4455"; empty when there is no master.
	ParentID      string
	GrandmasterID string
	// Selection attributes (sfptpd's rule order: state, alarms,
	// user priority, clock class, total accuracy, steps removed).
	UserPriority int
	ClockClass   uint8
	AccuracyNS   float64 // total accuracy; +Inf when unknown
	StepsRemoved int
	LastUpdate   time.Time
	Steps        int // clock steps so far

	// OutlierFilter says the module passes its offsets through sfptpd's
	// outlier filter (a PTP port does); the fields after it are valid
	// only then. Outliers is how many offsets the filter discarded
	// (sfptpd's adaptive-outlier-filter-discards) of OutlierSamples
	// judged, and OutlierThresholdNS the distance from the recent
	// mean beyond which the next offset is discarded (sfptpd's
	// outlier-threshold; 0 until the filter holds enough offsets).
	OutlierFilter      bool
	Outliers           uint64
	OutlierSamples     uint64
	OutlierThresholdNS float64

	// The fields below feed the sfptpd-format outputs (json_stats, the
	// text stats line, the state files). Zero values mean "not
	// measured", and the writers then leave the key out as sfptpd does.

	// Source names the reference of a module that measures against a
	// remote clock, as sfptpd's realtime stats name it: "gm" for PTP,
	// "ntp" for NTP. Empty means the module writes no realtime stats
	// (freerun).
	Source string
	// MasterClock is the name of a local clock the instance measures
	// against (sfptpd's clock-to-clock servos); empty for a remote
	// reference, whose name is Source.
	MasterClock string
	// MasterTime and SlaveTime are the two clocks' readings at the
	// last comparison, written as clock-master.time and
	// clock-slave.time; zero when the module did not read them (sfptpd's
	// PTP and NTP modules never do).
	MasterTime time.Time
	SlaveTime  time.Time
	// ClockID is the clock's hardware identity as sfptpd prints it
	// ("0011:22ff:fe33:4455"; "system" for the system clock).
	ClockID string
	// ActiveInterface is the physical interface carrying the traffic
	// (a bond's active member); empty when the module has none.
	ActiveInterface string
	// HasPI says PTerm and ITerm are valid.
	HasPI bool
	// PTerm and ITerm split FreqAdjPPB into the servo's proportional
	// and integral contributions (ppb), sfptpd's p-term and i-term.
	PTerm float64
	ITerm float64
	// PTP holds what only a PTP port knows; nil for other modules.
	PTP *PTPStatus

	// Leap59 and Leap61 are the leap second flags of the time the
	// instance serves or follows (a PTP slave: its parent's Announce):
	// the last minute of the current UTC day has 59 or 61 seconds. The
	// engine schedules a leap second when they change on the selected
	// slave, as sfptpd does.
	Leap59, Leap61 bool
	// UTCOffset is TAI-UTC in seconds as announced; UTCOffsetValid says
	// the announcer flags it valid.
	UTCOffset      int
	UTCOffsetValid bool
	// AnnounceInterval is a PTP port's announce interval; the guard
	// interval around a leap second its flags schedule is twice it. Zero
	// for other modules.
	AnnounceInterval time.Duration
}

// PTPStatus is a PTP port's data for its sfptpd state file and the
// ptp-nodes file.
type PTPStatus struct {
	Domain       int
	Transport    string // "IPv4"
	HWTimestamps bool
	// ProfileID is the profile identifier and ProfileName/Version its
	// name, as in the state file's "profile:" line.
	ProfileID      [6]byte
	ProfileName    string
	ProfileVersion string
	DelayMechanism string // "end-to-end" or "peer-to-peer"
	TwoStep        bool
	SlaveOnly      bool
	ParentPort     int
	LocalPort      int
	// Grandmaster data from the parent's Announce (or our own as master).
	GMClockAccuracy int // the IEEE 1588 accuracy enumeration
	GMPriority1     int
	GMPriority2     int
	PTPTimescale    bool
	UTCOffset       int
	Leap59, Leap61  bool
	// Nodes are the PTP nodes heard (announce senders).
	Nodes []Node
}

// Node is one PTP node heard on a port, a row of sfptpd's ptp-nodes.
type Node struct {
	State      string // "master" for an Announce sender
	ClockID    string // sfptpd's form
	PortNumber int
	Domain     int
}

// Alarm names, sfptpd's texts in sfptpd's order (its alarm table): the
// json_stats "alarms" array and the state files list them in this order.
const (
	AlarmPPSNoSignal                 = "pps-no-signal"
	AlarmPPSSeqNumError              = "pps-seq-num-error"
	AlarmNoTimeOfDay                 = "no-time-of-day"
	AlarmPPSBadSignal                = "pps-bad-signal"
	AlarmNoSyncPkts                  = "no-sync-pkts"
	AlarmNoFollowUps                 = "no-follow-ups"
	AlarmNoDelayResps                = "no-delay-resps"
	AlarmNoPDelayResps               = "no-pdelay-resps"
	AlarmNoPDelayRespFollowUps       = "no-pdelay-resp-follow-ups"
	AlarmNoTxTimestamps              = "no-tx-timestamps"
	AlarmNoRxTimestamps              = "no-rx-timestamps"
	AlarmNoInterface                 = "no-interface"
	AlarmClockCtrlFailure            = "clock-ctrl-failure"
	AlarmClockNearEpoch              = "clock-near-epoch"
	AlarmCapsMismatch                = "caps-mismatch "
	AlarmClusteringThresholdExceeded = "clustering-guard"
	AlarmSustainedSyncFailure        = "sustained-sync-failure"
)

// alarmOrder is sfptpd's alarm table order.
var alarmOrder = [...]string{
	AlarmPPSNoSignal, AlarmPPSSeqNumError, AlarmNoTimeOfDay, AlarmPPSBadSignal,
	AlarmNoSyncPkts, AlarmNoFollowUps, AlarmNoDelayResps, AlarmNoPDelayResps,
	AlarmNoPDelayRespFollowUps, AlarmNoTxTimestamps, AlarmNoRxTimestamps,
	AlarmNoInterface, AlarmClockCtrlFailure, AlarmClockNearEpoch,
	AlarmCapsMismatch, AlarmClusteringThresholdExceeded, AlarmSustainedSyncFailure,
}

// AlarmRank is an alarm's position in sfptpd's table; names sfptpd
// does not have rank after all of its own.
func AlarmRank(name string) int {
	for i, a := range alarmOrder {
		if a == name {
			return i
		}
	}
	return len(alarmOrder)
}

// SortAlarms returns the alarms in sfptpd's order, without duplicates;
// names sfptpd lacks follow in their given order. a is not modified.
func SortAlarms(a []string) []string {
	out := make([]string, 0, len(a))
	seen := map[string]bool{}
	for rank := 0; rank <= len(alarmOrder); rank++ {
		for _, n := range a {
			if AlarmRank(n) == rank && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// Instance is one sync instance. Implementations are safe for
// concurrent use: the engine reads Status while Run works.
type Instance interface {
	// Name is the instance name.
	Name() string
	// Run operates the instance until ctx is cancelled.
	Run(ctx context.Context) error
	// Status returns a snapshot.
	Status() Status
	// SetDiscipline tells the instance whether it may adjust its clock:
	// only the selected instance does (and never under clock_control
	// no-adjust, which the instance's own config enforces).
	SetDiscipline(on bool)
	// StepClock steps the clock by the current offset (stepclocks).
	StepClock() error
	// SetPID sets the servo's proportional, integral and differential
	// coefficients (pid_adjust); reset restarts the servo.
	SetPID(kp, ki, kd float64, reset bool)
}
