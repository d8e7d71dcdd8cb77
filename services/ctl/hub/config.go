package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tickbox-fw/tickbox/services/ctl/kea"
)

// DefaultTimeout bounds one forward, retry included, when the
// configuration sets no "forward-timeout".
const DefaultTimeout = 10 * time.Second

// maxConfig bounds a configuration file: it names a handful of sockets.
const maxConfig = 1 << 20

// Config is what the hub fronts: one control socket per service, in the
// order the file names them, and how long a forward may take.
type Config struct {
	Sockets []Socket
	Timeout time.Duration
}

// Socket is one service's control socket, as a Control Agent's
// "control-sockets" entry names it.
type Socket struct {
	Service string // the name clients put in "service"
	Type    string // "unix", the only type Kea 2.2 knows
	Name    string // the socket's path
}

// LoadConfig reads a configuration file; see ParseConfig.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hub config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("hub config: read %s: %w", path, err)
	}
	if len(data) > maxConfig {
		return nil, fmt.Errorf("hub config: %s: larger than %d bytes", path, maxConfig)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("hub config: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a configuration in the shape of Kea's Control Agent:
//
//	{"Control-agent": {
//	    "control-sockets": {
//	        "ptpd": {"socket-type": "unix", "socket-name": "/run/ptpd/control.sock"}
//	    },
//	    "forward-timeout": 10000
//	}}
//
// Comments are allowed where Kea allows them. The inner object alone is
// accepted too. Other Control Agent keys
// (http-host, http-port, authentication, loggers, hooks-libraries, …)
// are ignored, so that a Control Agent's own file loads: the hub's
// listeners and authentication come from its flags. forward-timeout, in
// milliseconds, is the hub's own key. Like the Control Agent, the hub
// refuses a socket type other than "unix", an entry without a
// socket-name, and unknown keys inside an entry ("user-context" and
// "comment" aside); unlike it, it also refuses a file that names no
// socket at all, which could only be a mistake for a hub.
func ParseConfig(data []byte) (*Config, error) {
	// Kea's files carry comments (#, //, /* */), its shipped ones many.
	data, err := kea.StripComments(data)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	var top map[string]json.RawMessage
	if err := strictUnmarshal(data, &top); err != nil {
		return nil, err
	}
	body := data
	if inner, ok := top["Control-agent"]; ok {
		body = inner
		if err := strictUnmarshal(body, &top); err != nil {
			return nil, fmt.Errorf("Control-agent: %w", err)
		}
	}
	cfg := &Config{Timeout: DefaultTimeout}
	if raw, ok := top["forward-timeout"]; ok {
		var ms int64
		if err := json.Unmarshal(raw, &ms); err != nil || ms <= 0 || ms > 3600_000 {
			return nil, fmt.Errorf("forward-timeout: want milliseconds between 1 and 3600000, got %s", raw)
		}
		cfg.Timeout = time.Duration(ms) * time.Millisecond
	}
	raw, ok := top["control-sockets"]
	if !ok {
		return nil, errors.New("no control-sockets")
	}
	names, entries, err := orderedObject(raw)
	if err != nil {
		return nil, fmt.Errorf("control-sockets: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("control-sockets names no service")
	}
	for i, name := range names {
		if name == "" {
			return nil, errors.New("control-sockets: empty service name")
		}
		var e map[string]json.RawMessage
		if err := strictUnmarshal(entries[i], &e); err != nil {
			return nil, fmt.Errorf("control-sockets.%s: %w", name, err)
		}
		s := Socket{Service: name, Type: "unix"}
		for k, v := range e {
			switch k {
			case "socket-type":
				if err := json.Unmarshal(v, &s.Type); err != nil {
					return nil, fmt.Errorf("control-sockets.%s.socket-type: want a string, got %s", name, v)
				}
			case "socket-name":
				if err := json.Unmarshal(v, &s.Name); err != nil {
					return nil, fmt.Errorf("control-sockets.%s.socket-name: want a string, got %s", name, v)
				}
			case "user-context", "comment":
			default:
				return nil, fmt.Errorf("control-sockets.%s: unknown key %q", name, k)
			}
		}
		if s.Type != "unix" {
			return nil, fmt.Errorf("control-sockets.%s.socket-type: %q: only \"unix\" is supported", name, s.Type)
		}
		if s.Name == "" {
			return nil, fmt.Errorf("control-sockets.%s: no socket-name", name)
		}
		cfg.Sockets = append(cfg.Sockets, s)
	}
	return cfg, nil
}

// strictUnmarshal decodes one JSON object and refuses trailing data.
func strictUnmarshal(data []byte, v *map[string]json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if *v == nil {
		return errors.New("want a JSON object, got null")
	}
	if dec.More() {
		return errors.New("invalid JSON: data after the object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the object")
	}
	return nil
}

// orderedObject returns an object's keys in file order with their
// values; a duplicate key is an error, as it is in Kea's parser.
func orderedObject(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("want an object, got %s", raw)
	}
	var names []string
	var vals []json.RawMessage
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key := tok.(string)
		if seen[key] {
			return nil, nil, fmt.Errorf("duplicate service %q", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("%s: invalid JSON: %w", key, err)
		}
		names = append(names, key)
		vals = append(vals, v)
	}
	return names, vals, nil
}
