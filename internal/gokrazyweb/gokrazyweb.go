// Package gokrazyweb is a client for the gokrazy web UI of a booted tickbox
// image, shared by the image tool (gokrazy-instance/cmd/tickbox-image) and
// the end-to-end tests, so that both speak to the UI the same way.
//
//   - [New] makes a [Client] for a base URL and the web UI password; every
//     request carries basic auth for the user "gokrazy".
//   - [Client.Up] asks whether the UI answers GET / with 200.
//   - [Client.Services] reads the service list (the JSON form of /).
//   - [Client.Status] reads the box's machine, model and build (the same
//     JSON).
//   - [Client.Features], [Client.Stream], [Client.Switch] and
//     [Client.Reboot] speak gokrazy's update protocol (update.go).
//   - [Client.Log] opens a service's log stream (/log).
//   - [Client.Start] presses a service's "supervise" button: the status
//     page's xsrf token and cookie, then POST /restart. [Client.StartBreakglass]
//     does so for breakglass, which does not start on boot.
//   - [XSRFToken] finds the form token in a status page.
package gokrazyweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// User is the web UI's basic-auth user name.
const User = "gokrazy"

// BreakglassPath is breakglass's service path on the image.
const BreakglassPath = "/user/breakglass"

// xsrfCookie is the cookie gokrazy keeps the form token in; POST /restart
// is accepted only when the form field and the cookie agree.
const xsrfCookie = "gokrazy_xsrf"

// maxPage bounds what is read of a status page or service list: both are a
// few kilobytes, and a misbehaving server must not make the client grow.
const maxPage = 1 << 20

// ErrNoXSRFToken means a status page carried no form token or no xsrf
// cookie, so its form cannot be submitted.
var ErrNoXSRFToken = errors.New("no form token")

// ErrUnauthorized means the web UI answered 401: the password is wrong.
var ErrUnauthorized = errors.New("the web UI refused the password (401)")

// ErrRestart means POST /restart was answered with an error status.
var ErrRestart = errors.New("POST /restart failed")

// Client talks to one gokrazy web UI. It is safe for concurrent use.
type Client struct {
	base     string // http://host:port, no trailing slash
	password string
	http     *http.Client
}

// New returns a client for the web UI at base (e.g. http://127.0.0.1:8080)
// with the given password. The client does not follow redirects: gokrazy
// answers a form POST with 303, which is the success the caller wants to
// see, and a redirect must not carry the password elsewhere. Requests are
// bounded by their context only, since log streams stay open.
func New(base, password string) *Client {
	return &Client{
		base:     strings.TrimRight(base, "/"),
		password: password,
		http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// Base is the URL the client talks to.
func (c *Client) Base() string { return c.base }

func (c *Client) newRequest(ctx context.Context, method, p string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+p, body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(User, c.password)
	return req, nil
}

// Get sends GET p (a path with query) with basic auth, and Accept when
// accept is not empty. The caller closes the body.
func (c *Client) Get(ctx context.Context, p, accept string) (*http.Response, error) {
	req, err := c.newRequest(ctx, http.MethodGet, p, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return c.http.Do(req)
}

// Status is what the web UI's JSON status says about the box.
type Status struct {
	Hostname string
	// Model is the board, e.g. "Raspberry Pi 4 Model B Rev 1.4", or the
	// PC's DMI vendor ("QEMU").
	Model string
	// Kernel is the kernel release and machine, e.g. "Linux 6.12.8
	// (x86_64)".
	Kernel string
	// BuildTimestamp is the image's build time, as gok stamped it.
	BuildTimestamp string
	// PermUUID is the partition UUID of /perm, derived (as all of the
	// box's partition UUIDs) from the hostname the image was built for.
	PermUUID string
}

// Status reads GET / as JSON. A wrong password is ErrUnauthorized.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	resp, err := c.Get(ctx, "/", "application/json")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return st, ErrUnauthorized
	case resp.StatusCode != http.StatusOK:
		return st, fmt.Errorf("GET /: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPage)).Decode(&st); err != nil {
		return st, fmt.Errorf("GET / (JSON status): %w", err)
	}
	return st, nil
}

// Up returns nil when GET / answers 200, that is, the UI is serving and
// the password is right.
func (c *Client) Up(ctx context.Context) error {
	resp, err := c.Get(ctx, "/", "")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxPage))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /: %s", resp.Status)
	}
	return nil
}

// Service is one entry of the web UI's service list.
type Service struct {
	Stopped   bool
	StartTime time.Time
	Pid       int
	Path      string
	Args      []string
}

// Services reads the service list (GET / as JSON), keyed by path.
func (c *Client) Services(ctx context.Context) (map[string]Service, error) {
	resp, err := c.Get(ctx, "/", "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /: %s", resp.Status)
	}
	var st struct{ Services []Service }
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPage)).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET /: %w", err)
	}
	m := make(map[string]Service, len(st.Services))
	for _, s := range st.Services {
		m[s.Path] = s
	}
	return m, nil
}

// Log opens a service's stderr stream (GET /log?path=SVC&stream=stderr).
// gokrazy replays the retained log first, then sends new lines until ctx
// ends. The caller closes the stream.
func (c *Client) Log(ctx context.Context, svc string) (io.ReadCloser, error) {
	p := "/log?path=" + url.QueryEscape(svc) + "&stream=stderr"
	resp, err := c.Get(ctx, p, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", p, resp.Status)
	}
	return resp.Body, nil
}

var tokenRe = regexp.MustCompile(`name="xsrftoken" value="(-?[0-9]+)"`)

// XSRFToken returns the form token of a gokrazy status page, or "".
func XSRFToken(page []byte) string {
	m := tokenRe.FindSubmatch(page)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// Start puts a service under supervision ("supervise: loop") and starts
// it, as the button on its status page does: GET /status?path=SVC for the
// form token and its cookie, then POST /restart with both. The error wraps
// ErrNoXSRFToken or ErrRestart when the UI answered but refused.
func (c *Client) Start(ctx context.Context, svc string) error {
	statusPath := "/status?path=" + svc
	resp, err := c.Get(ctx, statusPath, "")
	if err != nil {
		return err
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET %s: %w", statusPath, err)
	}
	token := XSRFToken(page)
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == xsrfCookie {
			cookie = ck
		}
	}
	if token == "" || cookie == nil {
		return fmt.Errorf("%w on %s (%s)", ErrNoXSRFToken, statusPath, resp.Status)
	}
	form := url.Values{"xsrftoken": {token}, "path": {svc}, "supervise": {"loop"}}
	req, err := c.newRequest(ctx, http.MethodPost, "/restart", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	resp, err = c.http.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%w: %s: %s", ErrRestart, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// StartBreakglass starts breakglass, which the image does not start on
// boot, so that ssh reaches the VM.
func (c *Client) StartBreakglass(ctx context.Context) error {
	return c.Start(ctx, BreakglassPath)
}
