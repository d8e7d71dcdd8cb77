package gokrazyweb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"slices"
	"strings"
)

// gokrazy's update protocol, as the box serves it (gokrazy's update.go)
// and gok speaks it:
//
//   - GET /update/features: the protocol features the box supports, a
//     comma-separated list ("partuuid,updatehash,gpt,"), as text or, when
//     JSON is asked for, as {"features": "..."}.
//   - PUT /update/root, /update/boot, /update/mbr: the body is written to
//     the inactive root partition, the boot partition or the start of the
//     disk; the answer is the hex hash of what was written: CRC32 (IEEE)
//     when the request says "X-Gokrazy-Update-Hash: crc32" (feature
//     "updatehash"), else SHA-256. A box without the handler answers with
//     its HTML page.
//   - POST /update/switch: the boot partition's command line names the
//     inactive root partition.
//   - POST /reboot: the box stops its services, then reboots (kexec
//     unless ?kexec=off); the answer comes once the services are stopped.

// ErrNotImplemented means the box has no handler for an update
// destination (it answered a PUT with its HTML page).
var ErrNotImplemented = errors.New("the box has no update handler for it")

// Features reads the box's update protocol features.
func (c *Client) Features(ctx context.Context) ([]string, error) {
	resp, err := c.Get(ctx, "/update/features", "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return nil, fmt.Errorf("GET /update/features: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, ErrUnauthorized
	case resp.StatusCode == http.StatusNotFound:
		return nil, nil // an old box: no optional features
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET /update/features: %s", resp.Status)
	}
	list := string(body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		var f struct{ Features string }
		if err := json.Unmarshal(body, &f); err != nil {
			return nil, fmt.Errorf("GET /update/features: %w", err)
		}
		list = f.Features
	}
	var out []string
	for _, f := range strings.Split(strings.TrimSpace(list), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out, nil
}

// Stream sends r to the update destination dest ("root", "boot" or
// "mbr") and checks the hash the box answers against what was sent:
// CRC32 when features hold "updatehash", else SHA-256.
func (c *Client) Stream(ctx context.Context, features []string, dest string, r io.Reader) error {
	var h hash.Hash = sha256.New()
	crc := slices.Contains(features, "updatehash")
	if crc {
		h = crc32.NewIEEE()
	}
	p := "/update/" + dest
	req, err := c.newRequest(ctx, http.MethodPut, p, io.TeeReader(r, h))
	if err != nil {
		return err
	}
	if crc {
		req.Header.Set("X-Gokrazy-Update-Hash", "crc32")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("PUT %s: %w", p, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("PUT %s: %s: %q", p, resp.Status, strings.TrimSpace(string(body)))
	case bytes.HasPrefix(body, []byte("<!DOCTYPE html>")):
		return fmt.Errorf("PUT %s: %w", p, ErrNotImplemented)
	}
	got, err := hex.DecodeString(strings.TrimSpace(string(body)))
	if err != nil {
		return fmt.Errorf("PUT %s: the box's hash %q: %w", p, body, err)
	}
	if want := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("PUT %s: the box wrote data with hash %x, %x was sent", p, got, want)
	}
	return nil
}

// post sends an empty POST to p and wants 200.
func (c *Client) post(ctx context.Context, p string) error {
	req, err := c.newRequest(ctx, http.MethodPost, p, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return ErrUnauthorized
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("POST %s: %s: %q", p, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Switch makes the box boot its inactive root partition next.
func (c *Client) Switch(ctx context.Context) error { return c.post(ctx, "/update/switch") }

// Reboot asks the box to stop its services and reboot (with kexec, as
// gok does).
func (c *Client) Reboot(ctx context.Context) error { return c.post(ctx, "/reboot") }
