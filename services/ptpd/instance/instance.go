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
	// Alarms are sfptpd-style alarm names ("no-sync-pkts", ...); empty
	// means none.
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
