package sim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// State is the link partner's state: what the cable would present.
type State struct {
	// Up means a partner is connected and negotiates. With AN set and Up
	// clear, the partner finished auto-negotiation but the link is not up
	// yet (BMSR 0x7969 on the 88E1512).
	Up bool
	AN bool
	// Speed is the highest speed the partner advertises: 10, 100 or 1000.
	Speed int
	// Master is the role our PHY resolves to on a 1000BASE-T link.
	Master bool
}

// Step is one entry of a link script: at Offset after the script's
// start (or cycle start), the partner takes State.
type Step struct {
	Offset time.Duration
	State  State
}

// Config is a parsed sim spec.
type Config struct {
	Model Model
	// Initial is the partner's state at start.
	Initial State
	// ANTime is how long auto-negotiation takes after a restart, a reset
	// or a change of the partner.
	ANTime time.Duration
	// Script changes the partner over time; Cycle, when not zero,
	// repeats it with that period.
	Script []Step
	Cycle  time.Duration
}

// DefaultANTime is the auto-negotiation time after a restart.
const DefaultANTime = time.Second

// Limits of a spec, so that a typo cannot make a script that grows
// memory or never settles.
const (
	maxSteps  = 256
	maxOffset = 24 * time.Hour
	minCycle  = 10 * time.Millisecond
)

// ParseSpec parses the parameters of a "sim" backend spec (the part after
// "sim:"):
//
//	[MODEL][,link=up|down][,speed=10|100|1000][,role=master|slave]
//	[,an=DURATION][,script=STATE@OFFSET;STATE@OFFSET...][,cycle=DURATION]
//
// STATE is down, an (negotiated, link not yet up) or
// up[/SPEED][/master|/slave]; the speed and role default to the spec's.
// Offsets are Go durations from the script's start and must increase.
// With cycle, the script starts again every cycle (which must be longer
// than the last offset), so a VM shows link changes forever. Example:
//
//	88e1512,link=down,script=up@2s;down@10s;up/100@12s,cycle=20s
func ParseSpec(params string) (Config, error) {
	parts := strings.Split(params, ",")
	modelName := strings.TrimSpace(parts[0])
	if modelName == "" {
		modelName = DefaultModel
	}
	m, err := LookupModel(modelName)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Model: m, ANTime: DefaultANTime, Initial: State{Speed: 1000, Master: true}}
	if !m.Gigabit {
		cfg.Initial.Speed = 100
	}
	var script string
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return Config{}, fmt.Errorf("sim: option %q: want KEY=VALUE", p)
		}
		if seen[k] {
			return Config{}, fmt.Errorf("sim: option %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "link":
			switch v {
			case "up":
				cfg.Initial.Up = true
			case "down":
				cfg.Initial.Up = false
			default:
				return Config{}, fmt.Errorf("sim: link=%q: want up or down", v)
			}
		case "speed":
			s, err := parseSpeed(v)
			if err != nil {
				return Config{}, err
			}
			cfg.Initial.Speed = s
		case "role":
			switch v {
			case "master":
				cfg.Initial.Master = true
			case "slave":
				cfg.Initial.Master = false
			default:
				return Config{}, fmt.Errorf("sim: role=%q: want master or slave", v)
			}
		case "an":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				return Config{}, fmt.Errorf("sim: an=%q: want a duration from 0 to 1m", v)
			}
			cfg.ANTime = d
		case "script":
			script = v
		case "cycle":
			d, err := time.ParseDuration(v)
			if err != nil || d < minCycle || d > maxOffset {
				return Config{}, fmt.Errorf("sim: cycle=%q: want a duration from %v to %v", v, minCycle, maxOffset)
			}
			cfg.Cycle = d
		default:
			return Config{}, fmt.Errorf("sim: unknown option %q (link, speed, role, an, script, cycle)", k)
		}
	}
	if seen["script"] {
		steps, err := ParseScript(script, cfg.Initial)
		if err != nil {
			return Config{}, err
		}
		cfg.Script = steps
	}
	if cfg.Cycle > 0 {
		if len(cfg.Script) == 0 {
			return Config{}, errors.New("sim: cycle needs a script")
		}
		if last := cfg.Script[len(cfg.Script)-1].Offset; cfg.Cycle <= last {
			return Config{}, fmt.Errorf("sim: cycle %v must be longer than the last script offset %v", cfg.Cycle, last)
		}
	}
	return cfg, nil
}

// ParseScript parses "STATE@OFFSET;STATE@OFFSET...". def supplies the
// speed and role of a bare "up".
func ParseScript(s string, def State) ([]Step, error) {
	if s == "" {
		return nil, errors.New("sim: empty script")
	}
	var steps []Step
	for _, item := range strings.Split(s, ";") {
		if len(steps) == maxSteps {
			return nil, fmt.Errorf("sim: script has more than %d steps", maxSteps)
		}
		state, at, ok := strings.Cut(item, "@")
		if !ok {
			return nil, fmt.Errorf("sim: script step %q: want STATE@OFFSET", item)
		}
		off, err := time.ParseDuration(at)
		if err != nil || off < 0 || off > maxOffset {
			return nil, fmt.Errorf("sim: script step %q: offset: want a duration from 0 to %v", item, maxOffset)
		}
		if n := len(steps); n > 0 && off <= steps[n-1].Offset {
			return nil, fmt.Errorf("sim: script step %q: offsets must increase", item)
		}
		st, err := parseState(state, def)
		if err != nil {
			return nil, fmt.Errorf("sim: script step %q: %w", item, err)
		}
		steps = append(steps, Step{Offset: off, State: st})
	}
	return steps, nil
}

func parseState(s string, def State) (State, error) {
	f := strings.Split(s, "/")
	st := State{Speed: def.Speed, Master: def.Master}
	switch f[0] {
	case "down":
		if len(f) > 1 {
			return st, errors.New("down takes no speed or role")
		}
		return st, nil
	case "an":
		if len(f) > 1 {
			return st, errors.New("an takes no speed or role")
		}
		st.AN = true
		return st, nil
	case "up":
		st.Up = true
	default:
		return st, fmt.Errorf("state %q: want down, an or up[/SPEED][/master|/slave]", f[0])
	}
	if len(f) > 3 {
		return st, fmt.Errorf("state %q: too many fields", s)
	}
	var speedSet, roleSet bool
	for _, x := range f[1:] {
		switch x {
		case "master", "slave":
			if roleSet {
				return st, fmt.Errorf("state %q: role given twice", s)
			}
			roleSet, st.Master = true, x == "master"
		default:
			if speedSet {
				return st, fmt.Errorf("state %q: speed given twice", s)
			}
			sp, err := parseSpeed(x)
			if err != nil {
				return st, err
			}
			speedSet, st.Speed = true, sp
		}
	}
	return st, nil
}

func parseSpeed(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || (n != 10 && n != 100 && n != 1000) {
		return 0, fmt.Errorf("sim: speed %q: want 10, 100 or 1000", s)
	}
	return n, nil
}

// String formats a step the way ParseScript reads it.
func (s Step) String() string {
	return s.State.String() + "@" + s.Offset.String()
}

// String formats a state the way ParseScript reads it.
func (s State) String() string {
	switch {
	case s.Up:
		role := "slave"
		if s.Master {
			role = "master"
		}
		return fmt.Sprintf("up/%d/%s", s.Speed, role)
	case s.AN:
		return "an"
	}
	return "down"
}
