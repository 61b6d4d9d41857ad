package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are what a token grants. Tokens are JWTs signed with HS256 and the
// server's auth secret, and must carry an expiry (exp).
//
//   - A peer token names a room and a peer id: it opens the WebSocket
//     /?roomId=ROOM&peerId=PEER (query parameter token=) and, as
//     "Authorization: Bearer", drives the broadcaster whose id is PEER in
//     ROOM through the broadcaster API (a token for GET /rooms/ROOM needs
//     only the room).
//   - An admin token has "admin": true; it opens /admin/.
type Claims struct {
	Room  string `json:"room,omitempty"`
	Peer  string `json:"peer,omitempty"`
	Admin bool   `json:"admin,omitempty"`
	jwt.RegisteredClaims
}

// tokenLeeway tolerates clock skew between the issuer and this server.
const tokenLeeway = 5 * time.Second

// Auth checks tokens signed with one secret. A nil *Auth means auth is off:
// every check passes.
type Auth struct {
	key []byte
	now func() time.Time
}

// NewAuth returns the checker for secret, or nil (auth off) when secret is "".
func NewAuth(secret string) *Auth {
	if secret == "" {
		return nil
	}
	return &Auth{key: []byte(secret), now: time.Now}
}

// IssueToken signs c with secret (HS256), valid for ttl from now: what the
// `mediasoup-server token` command prints. Issued-at and expiry are set here.
func IssueToken(secret string, c Claims, ttl time.Duration) (string, error) {
	if secret == "" {
		return "", errors.New("no secret")
	}
	if ttl <= 0 {
		return "", errors.New("ttl must be > 0")
	}
	now := time.Now()
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
}

// authError is a refusal: HTTP 401 (no or bad credentials) or 403 (good
// credentials that do not grant this), with a one-line reason.
type authError struct {
	status int
	reason string
}

func (e *authError) Error() string { return e.reason }

func unauthorized(format string, args ...any) *authError {
	return &authError{http.StatusUnauthorized, fmt.Sprintf(format, args...)}
}

// parse verifies the token's signature (HS256 only: "none" and every other
// algorithm are refused) and its time claims (exp required).
func (a *Auth) parse(token string) (*Claims, error) {
	if token == "" {
		return nil, unauthorized("missing token")
	}
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(a.now),
	)
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, unauthorized("token expired")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, unauthorized("token has no expiry (exp)")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, unauthorized("bad token signature or algorithm (HS256 required)")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, unauthorized("token not valid yet")
	}
	return nil, unauthorized("bad token")
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// checkPeer admits a WebSocket upgrade: the token (query parameter token,
// else an Authorization: Bearer header) must name exactly the roomId and
// peerId of the URL.
func (a *Auth) checkPeer(r *http.Request) error {
	if a == nil {
		return nil
	}
	q := r.URL.Query()
	tok := q.Get("token")
	if tok == "" {
		tok = bearer(r)
	}
	c, err := a.parse(tok)
	if err != nil {
		return err
	}
	switch {
	case c.Room == "" || c.Peer == "":
		return unauthorized("token names no room or no peer")
	case c.Room != q.Get("roomId"):
		return unauthorized("token is for another room")
	case c.Peer != q.Get("peerId"):
		return unauthorized("token is for another peer")
	}
	return nil
}

// checkAdmin admits a request to /admin/: a Bearer token with admin: true.
func (a *Auth) checkAdmin(r *http.Request) error {
	if a == nil {
		return nil
	}
	c, err := a.parse(bearer(r))
	if err != nil {
		return err
	}
	if !c.Admin {
		return &authError{http.StatusForbidden, "not an admin token"}
	}
	return nil
}

// checkBroadcaster admits a request to the broadcaster API (/rooms/...): a
// Bearer token for the room of the path and, when the request concerns a
// broadcaster (its id in the path, or in the body of a create), for that
// broadcaster as the peer. A create's body is read here and put back.
func (a *Auth) checkBroadcaster(r *http.Request) error {
	if a == nil {
		return nil
	}
	c, err := a.parse(bearer(r))
	if err != nil {
		return err
	}
	roomID, bid, isCreate, ok := broadcasterPath(r)
	if !ok {
		return nil // not a broadcaster route: the mux answers 404/405
	}
	if c.Room == "" || c.Room != roomID {
		return unauthorized("token is for another room")
	}
	if isCreate {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBroadcasterBody+1))
		if err != nil {
			return &authError{http.StatusBadRequest, "cannot read the body"}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			ID string `json:"id"`
		}
		if len(body) > maxBroadcasterBody {
			return nil // the handler answers 413
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return &authError{http.StatusBadRequest, "body: not a JSON object with a string id"}
		}
		bid = req.ID
	}
	if bid != "" && c.Peer != bid {
		return unauthorized("token is for another peer")
	}
	return nil
}

// broadcasterPath splits /rooms/{roomId}[/broadcasters[/{id}/...]] as the
// ServeMux does (segment by segment, each unescaped). isCreate is POST
// /rooms/{roomId}/broadcasters, whose broadcaster id is in the body.
func broadcasterPath(r *http.Request) (roomID, broadcasterID string, isCreate, ok bool) {
	rest, found := strings.CutPrefix(r.URL.EscapedPath(), "/rooms/")
	if !found {
		return "", "", false, false
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", "", false, false
		}
		segs[i] = u
	}
	roomID = segs[0]
	if roomID == "" {
		return "", "", false, false
	}
	if len(segs) >= 2 && segs[1] == "broadcasters" {
		if len(segs) == 2 {
			return roomID, "", r.Method == http.MethodPost, true
		}
		return roomID, segs[2], false, true
	}
	return roomID, "", false, true
}

// refuse answers an auth failure with its status and one-line reason.
func refuse(w http.ResponseWriter, err error) {
	var ae *authError
	if errors.As(err, &ae) {
		if ae.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mediasoup-server"`)
		}
		httpError(w, ae.status, ae.reason)
		return
	}
	httpError(w, http.StatusUnauthorized, err.Error())
}

// AllowOrigins returns a Limits.CheckOrigin that admits a WebSocket upgrade
// whose Origin header is one of origins (scheme://host[:port], compared
// case-insensitively), or that has no Origin header (not a browser: the
// allow-list keeps other web sites from using a visitor's browser, it is not
// authentication). An empty list returns nil: any origin.
func AllowOrigins(origins []string) func(*http.Request) bool {
	if len(origins) == 0 {
		return nil
	}
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))] = true
	}
	return func(r *http.Request) bool {
		o := r.Header.Get("Origin")
		return o == "" || allowed[strings.ToLower(o)]
	}
}
