// Package httpauth checks HTTP basic authentication against one user and
// a password read from a file, as gokrazy's web interface does with its
// password file (user "gokrazy", the file's content with surrounding
// whitespace trimmed; gokr-packer writes it to /etc/gokr-pw.txt on the
// image).
//
//   - Load reads the password file; a missing, unreadable or empty file
//     is an error carrying the OS text.
//   - Basic.Check tests a request's credentials in constant time.
//   - Basic.Wrap guards a handler: without valid credentials the request
//     gets 401 with a WWW-Authenticate challenge and the body that the
//     given deny handler writes (plain text when it is nil).
package httpauth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

// maxPasswordFile bounds what is read of a password file.
const maxPasswordFile = 4096

// Basic is one user and password for HTTP basic authentication.
type Basic struct {
	// Realm is named in the WWW-Authenticate challenge.
	Realm string
	user  [sha256.Size]byte
	pass  [sha256.Size]byte
}

// New returns a checker for user and password.
func New(realm, user, password string) *Basic {
	return &Basic{Realm: realm, user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(password))}
}

// Load returns a checker for user with the password in the file at path.
func Load(realm, user, path string) (*Basic, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return nil, fmt.Errorf("password file %s: %w", path, err)
	}
	if len(b) > maxPasswordFile {
		return nil, fmt.Errorf("password file %s: larger than %d bytes", path, maxPasswordFile)
	}
	pw := bytes.TrimSpace(b)
	if len(pw) == 0 {
		return nil, fmt.Errorf("password file %s: %w", path, ErrEmptyPassword)
	}
	return New(realm, user, string(pw)), nil
}

// ErrEmptyPassword is a password file with nothing but whitespace in it.
var ErrEmptyPassword = errors.New("empty password")

// Check reports whether r carries this user and password. Both are
// compared as SHA-256 digests with subtle.ConstantTimeCompare, so that
// neither their content nor their length shows in the time taken.
func (b *Basic) Check(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(pass))
	// Both compared always, and combined without a branch.
	return subtle.ConstantTimeCompare(u[:], b.user[:])&subtle.ConstantTimeCompare(p[:], b.pass[:]) == 1
}

// Wrap returns h guarded by b. A request without valid credentials gets
// status 401 with the challenge `Basic realm="REALM"`, and its body from
// deny, which must write the status itself (see DenyText); nil is
// DenyText.
func (b *Basic) Wrap(h http.Handler, deny http.Handler) http.Handler {
	if deny == nil {
		deny = http.HandlerFunc(DenyText)
	}
	challenge := `Basic realm=` + strconv.Quote(b.Realm)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.Check(r) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", challenge)
		deny.ServeHTTP(w, r)
	})
}

// DenyText answers 401 with a plain-text body.
func DenyText(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
}
