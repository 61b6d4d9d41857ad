package signaling_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/internal/testserver"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap/zaptest"
)

// opsServer is a real server in-process (pool, rooms, handler on a loopback
// httptest listener) with the operations options under test.
type opsServer struct {
	t       *testing.T
	pool    *worker.Pool
	rooms   *room.Manager
	handler *signaling.Handler
	url     string
}

func newOpsServer(t *testing.T, workers int, mod func(*signaling.Options), rmod ...func(*room.Options)) *opsServer {
	t.Helper()
	return newOpsServerPool(t, workers, nil, mod, rmod...)
}

// newOpsServerPool is newOpsServer whose worker pool options pmod changes.
func newOpsServerPool(t *testing.T, workers int, pmod func(*worker.Options), mod func(*signaling.Options), rmod ...func(*room.Options)) *opsServer {
	t.Helper()
	log := zaptest.NewLogger(t)
	var pmods []func(*worker.Options)
	if pmod != nil {
		pmods = append(pmods, pmod)
	}
	pool := testserver.Pool(t, workers, log, pmods...)
	ropts := room.Options{Logger: log.Named("room"), ServerRequestTimeout: settle}
	for _, m := range rmod {
		m(&ropts)
	}
	rooms := room.NewManager(pool, ropts)
	opts := signaling.Options{Workers: pool, Rooms: rooms, Logger: log.Named("signaling"), Version: worker.Version}
	if mod != nil {
		mod(&opts)
	}
	h := signaling.NewHandler(opts)
	srvURL := testserver.Serve(t, pool, rooms, h)
	return &opsServer{t: t, pool: pool, rooms: rooms, handler: h, url: srvURL}
}

// get answers the status and body of GET path with optional headers.
func (s *opsServer) get(path string, header ...string) (int, string) {
	s.t.Helper()
	return s.do(http.MethodGet, path, "", header...)
}

func (s *opsServer) do(method, path, body string, header ...string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads /metrics into series "name{k=v,...}" (labels sorted) → value.
func (s *opsServer) scrape() map[string]float64 {
	s.t.Helper()
	code, body := s.get("/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("/metrics answered %d: %s", code, body)
	}
	return parseMetrics(s.t, body)
}

func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad value in %q", line)
		}
		out[normSeries(line[:i])] = v
	}
	return out
}

// normSeries sorts the labels of `name{b="2",a="1"}` into name{a=1,b=2}.
func normSeries(s string) string {
	name, labels, ok := strings.Cut(s, "{")
	if !ok {
		return s
	}
	var parts []string
	for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
		if kv != "" {
			parts = append(parts, strings.ReplaceAll(kv, `"`, ""))
		}
	}
	slices.Sort(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// opsPeer is a protoo peer that accepts every server request.
type opsPeer struct {
	*client.Conn
	t          *testing.T
	send, recv client.TransportInfo
	caps       json.RawMessage
}

func (s *opsServer) dial(roomID, peerID string, query ...string) (*opsPeer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	opts := &client.DialOptions{OnRequest: func(string, json.RawMessage) (any, error) { return struct{}{}, nil }}
	if len(query) > 0 {
		opts.Query = map[string][]string{}
		for i := 0; i+1 < len(query); i += 2 {
			opts.Query[query[i]] = []string{query[i+1]}
		}
	}
	c, err := client.Dial(ctx, s.url, roomID, peerID, opts)
	if err != nil {
		return nil, err
	}
	s.t.Cleanup(func() { _ = c.Close() })
	return &opsPeer{Conn: c, t: s.t}, nil
}

func (s *opsServer) mustDial(roomID, peerID string, query ...string) *opsPeer {
	s.t.Helper()
	p, err := s.dial(roomID, peerID, query...)
	if err != nil {
		s.t.Fatalf("dial %s/%s: %v", roomID, peerID, err)
	}
	return p
}

func (p *opsPeer) req(method string, data, result any) error {
	return request(p.Conn, method, data, result)
}

func (p *opsPeer) must(method string, data, result any) {
	p.t.Helper()
	mustRequest(p.t, p.Conn, method, data, result)
}

// joinWithTransports: capabilities, a sending and a receiving transport, join.
func (p *opsPeer) joinWithTransports(name string) {
	p.t.Helper()
	p.must("getRouterRtpCapabilities", nil, &p.caps)
	p.must("createWebRtcTransport", client.CreateWebRtcTransportRequest{Producing: true}, &p.send)
	p.must("createWebRtcTransport", client.CreateWebRtcTransportRequest{Consuming: true}, &p.recv)
	p.must("join", client.JoinRequest{DisplayName: name, Device: client.Device{Flag: "go", Name: "ops-test"}, RtpCapabilities: p.caps}, nil)
}

func wantHTTP(t *testing.T, err error, status int) {
	t.Helper()
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != status {
		t.Fatalf("dial: %v, want HTTP %d", err, status)
	}
}

func wantProtocolError(t *testing.T, err error, code int) {
	t.Helper()
	var re *client.ResponseError
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("got %v, want error response %d", err, code)
	}
}

func TestMetricsFollowPeers(t *testing.T) {
	s := newOpsServer(t, 1, nil)
	m := s.scrape()
	for series, want := range map[string]float64{
		"mediasoup_server_rooms":                                        0,
		"mediasoup_server_peers{joined=true}":                           0,
		"mediasoup_server_websocket_connections":                        0,
		"mediasoup_server_worker_up{worker=0}":                          1,
		"mediasoup_server_worker_restarts_total{worker=0}":              0,
		"mediasoup_server_worker_deaths_total{worker=0}":                0,
		"mediasoup_server_draining":                                     0,
		"mediasoup_server_worker_cpu_seconds_total{mode=user,worker=0}": -1, // present
		"mediasoup_server_worker_max_rss_bytes{worker=0}":               -1,
		"mediasoup_server_worker_start_timeouts_total":                  -1,
		"mediasoup_server_worker_pending_requests{worker=0}":            -1,
	} {
		got, ok := m[series]
		if !ok || (want >= 0 && got != want) {
			t.Errorf("before: %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	if m["mediasoup_server_worker_max_rss_bytes{worker=0}"] < 1<<20 {
		t.Errorf("worker max RSS %v bytes: implausible", m["mediasoup_server_worker_max_rss_bytes{worker=0}"])
	}

	a := s.mustDial("mroom", "a")
	a.joinWithTransports("A")
	var prod client.IDResponse
	a.must("produce", client.ProduceRequest{TransportID: a.send.ID, Kind: "audio", RtpParameters: json.RawMessage(
		`{"codecs":[{"mimeType":"audio/opus","payloadType":111,"clockRate":48000,"channels":2}],"headerExtensions":[],"encodings":[{"ssrc":4242}],"rtcp":{"cname":"m"}}`)}, &prod)
	a.must("produceData", map[string]any{"transportId": a.send.ID, "label": "chat",
		"sctpStreamParameters": map[string]any{"streamId": 1, "ordered": true}}, nil)
	b := s.mustDial("mroom", "b")
	b.joinWithTransports("B")
	// b consumes a's producer and data producer once it accepted the server requests.
	testutil.Eventually(t, settle, func() bool {
		m := s.scrape()
		return m["mediasoup_server_consumers"] == 1 && m["mediasoup_server_data_consumers"] == 1
	}, "b's consumers not counted")
	_ = b.req("noSuchMethod", nil, nil)
	c := s.mustDial("mroom", "c") // connected, not joined

	m = s.scrape()
	for series, want := range map[string]float64{
		"mediasoup_server_rooms":                                                   1,
		"mediasoup_server_peers{joined=true}":                                      2,
		"mediasoup_server_peers{joined=false}":                                     1,
		"mediasoup_server_websocket_connections":                                   3,
		"mediasoup_server_transports":                                              4,
		"mediasoup_server_producers":                                               1,
		"mediasoup_server_consumers":                                               1,
		"mediasoup_server_data_producers":                                          1,
		"mediasoup_server_data_consumers":                                          1,
		"mediasoup_server_requests_total{code=200,method=join}":                    2,
		"mediasoup_server_requests_total{code=200,method=createWebRtcTransport}":   4,
		"mediasoup_server_requests_total{code=200,method=produce}":                 1,
		"mediasoup_server_requests_total{code=405,method=other}":                   1,
		"mediasoup_server_request_duration_seconds_count{method=join}":             2,
		"mediasoup_server_notifications_sent_total{method=mediasoup-version}":      3,
		"mediasoup_server_notifications_sent_total{method=newPeer}":                1,
		"mediasoup_server_server_requests_total{method=newConsumer,result=ok}":     1,
		"mediasoup_server_server_requests_total{method=newDataConsumer,result=ok}": 1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("with peers: %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// Round trips to the worker, by mediasoup method (mediasoup-go's
	// OnChannelRequest): one produce, four transports at least.
	if got := m["mediasoup_server_worker_request_duration_seconds_count{method=TRANSPORT_PRODUCE}"]; got != 1 {
		t.Errorf("worker requests TRANSPORT_PRODUCE counted %v times, want 1", got)
	}
	if got := m["mediasoup_server_worker_request_duration_seconds_count{method=ROUTER_CREATE_WEBRTCTRANSPORT_WITH_SERVER}"]; got < 4 {
		t.Errorf("worker requests ROUTER_CREATE_WEBRTCTRANSPORT_WITH_SERVER counted %v times, want ≥ 4", got)
	}

	// b leaves: its transports and consumers go, a hears peerClosed.
	_ = b.Close()
	_ = c.Close()
	testutil.Eventually(t, settle, func() bool {
		m := s.scrape()
		return m["mediasoup_server_peers{joined=true}"] == 1 && m["mediasoup_server_peers{joined=false}"] == 0 &&
			m["mediasoup_server_consumers"] == 0 && m["mediasoup_server_data_consumers"] == 0 &&
			m["mediasoup_server_transports"] == 2 && m["mediasoup_server_websocket_connections"] == 1 &&
			m["mediasoup_server_notifications_sent_total{method=peerClosed}"] == 1
	}, "metrics did not follow b leaving: %v", func() map[string]float64 { return s.scrape() }())
	_ = a.Close()
	testutil.Eventually(t, settle, func() bool {
		m := s.scrape()
		return m["mediasoup_server_rooms"] == 0 && m["mediasoup_server_peers{joined=true}"] == 0 &&
			m["mediasoup_server_websocket_connections"] == 0 && m["mediasoup_server_producers"] == 0
	}, "metrics did not return to zero")

	// A worker death is counted, and its restart. Scrapes go on while the
	// worker dies: each asks the workers for their resource usage, so some
	// are in flight to the dying worker (mediasoup-go v2.4.1 could abort the
	// process then; v2.6.0 answers them with an error).
	stopScraping := make(chan struct{})
	stop := sync.OnceFunc(func() { close(stopScraping) })
	defer stop()
	scraped := make(chan int, 1)
	go func() {
		n := 0
		defer func() { scraped <- n }()
		for {
			select {
			case <-stopScraping:
				return
			default:
			}
			if resp, err := http.Get(s.url + "/metrics"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				n++
			}
		}
	}()
	pid := s.pool.Infos()[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, settle, func() bool {
		in := s.pool.Infos()[0]
		return in.State == worker.StateAlive && in.Pid != pid
	}, "worker not respawned")
	stop()
	t.Logf("%d scrapes while the worker died and respawned", <-scraped)
	testutil.Eventually(t, settle, func() bool {
		m := s.scrape()
		return m["mediasoup_server_worker_deaths_total{worker=0}"] == 1 &&
			m["mediasoup_server_worker_restarts_total{worker=0}"] == 1 && m["mediasoup_server_worker_up{worker=0}"] == 1
	}, "worker death and restart not counted")
}

// Two servers in one process: each has its own registry.
func TestMetricsRegistriesAreSeparate(t *testing.T) {
	s1 := newOpsServer(t, 1, nil)
	s2 := newOpsServer(t, 1, nil)
	s1.mustDial("x", "a")
	testutil.Eventually(t, settle, func() bool {
		return s1.scrape()["mediasoup_server_websocket_connections"] == 1
	}, "s1 connection not counted")
	if v := s2.scrape()["mediasoup_server_websocket_connections"]; v != 0 {
		t.Fatalf("s2 counts s1's connection: %v", v)
	}
}

type readyBody struct {
	Status   string   `json:"status"`
	Draining bool     `json:"draining"`
	Reasons  []string `json:"reasons"`
}

func (s *opsServer) ready() (int, readyBody) {
	s.t.Helper()
	code, body := s.get("/readyz")
	var rb readyBody
	if err := json.Unmarshal([]byte(body), &rb); err != nil {
		s.t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, rb
}

func TestReadinessAndDrain(t *testing.T) {
	// A respawn 3 s after a death: /readyz is 503 for that long at least, a
	// window that a poll on a busy machine does not miss.
	s := newOpsServerPool(t, 2, func(o *worker.Options) { o.RespawnMinDelay = 3 * time.Second }, nil)
	if code, rb := s.ready(); code != http.StatusOK || rb.Status != "ready" || rb.Draining {
		t.Fatalf("/readyz = %d %+v, want 200 ready", code, rb)
	}
	// A dead worker makes the server not ready until it is replaced.
	if err := syscall.Kill(s.pool.Infos()[1].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, settle, func() bool { code, _ := s.ready(); return code == http.StatusServiceUnavailable },
		"/readyz stayed 200 with a dead worker")
	testutil.Eventually(t, settle, func() bool { code, _ := s.ready(); return code == http.StatusOK },
		"/readyz not 200 after the worker's respawn")

	joined := s.mustDial("d", "joined")
	joined.joinWithTransports("J")
	waiting := s.mustDial("d", "waiting")
	var caps json.RawMessage
	waiting.must("getRouterRtpCapabilities", nil, &caps)

	s.handler.Drain()
	code, rb := s.ready()
	if code != http.StatusServiceUnavailable || !rb.Draining || len(rb.Reasons) == 0 || !strings.Contains(rb.Reasons[0], "draining") {
		t.Fatalf("/readyz while draining = %d %+v, want 503 draining", code, rb)
	}
	if code, _ := s.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while draining = %d, want 200 (alive)", code)
	}
	if v := s.scrape()["mediasoup_server_draining"]; v != 1 {
		t.Fatalf("draining gauge = %v", v)
	}
	// New connections and joins are refused; peers in the room carry on.
	_, err := s.dial("d", "late")
	wantHTTP(t, err, http.StatusServiceUnavailable)
	_, err = s.dial("other", "late")
	wantHTTP(t, err, http.StatusServiceUnavailable)
	wantProtocolError(t, waiting.req("join", client.JoinRequest{DisplayName: "W", RtpCapabilities: caps}, nil), 503)
	var tr client.TransportInfo
	joined.must("createWebRtcTransport", client.CreateWebRtcTransportRequest{Consuming: true}, &tr)
	joined.must("changeDisplayName", map[string]string{"displayName": "J2"}, nil)
	// No new broadcaster either; reading a room still works.
	if code, body := s.do(http.MethodPost, "/rooms/d/broadcasters", `{"id":"bc","displayName":"bc","device":{"name":"x"}}`); code != http.StatusServiceUnavailable {
		t.Fatalf("new broadcaster while draining: %d %s, want 503", code, body)
	}
	if code, body := s.get("/rooms/d"); code != http.StatusOK {
		t.Fatalf("GET /rooms/d while draining: %d %s", code, body)
	}

	// The caller's next step: close the rooms with 4000.
	s.rooms.CloseAll(room.CloseKicked, "server shutting down")
	for _, p := range []*opsPeer{joined, waiting} {
		select {
		case <-p.Done():
			if p.CloseCode() != room.CloseKicked {
				t.Fatalf("%s closed with %d, want 4000", p.PeerID(), p.CloseCode())
			}
		case <-time.After(settle):
			t.Fatalf("%s not closed", p.PeerID())
		}
	}
}

const testSecret = "0123456789abcdef0123456789abcdef-test"

func TestAuthRefusesEveryBadToken(t *testing.T) {
	s := newOpsServer(t, 1, func(o *signaling.Options) { o.Auth = signaling.NewAuth(testSecret) })
	tok := func(secret string, c signaling.Claims, ttl time.Duration) string {
		t.Helper()
		tk, err := signaling.IssueToken(secret, c, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	good := tok(testSecret, signaling.Claims{Room: "r", Peer: "p"}, time.Minute)

	for _, tc := range []struct {
		name, token, want string
	}{
		{"missing", "", "missing token"},
		{"garbage", "not.a.jwt", "bad token"},
		{"bad signature", tok("another-secret-another-secret-xx", signaling.Claims{Room: "r", Peer: "p"}, time.Minute), "signature"},
		{"tampered claims", tamper(t, good, `{"room":"r","peer":"q"}`), "signature"},
		{"expired", signJWT(t, "HS256", testSecret, map[string]any{"room": "r", "peer": "p", "exp": time.Now().Add(-time.Hour).Unix()}), "expired"},
		{"no expiry", signJWT(t, "HS256", testSecret, map[string]any{"room": "r", "peer": "p"}), "exp"},
		{"wrong room", tok(testSecret, signaling.Claims{Room: "other", Peer: "p"}, time.Minute), "another room"},
		{"wrong peer", tok(testSecret, signaling.Claims{Room: "r", Peer: "q"}, time.Minute), "another peer"},
		{"no peer claim", tok(testSecret, signaling.Claims{Room: "r"}, time.Minute), "no peer"},
		{"alg none", signJWT(t, "none", "", map[string]any{"room": "r", "peer": "p", "exp": time.Now().Add(time.Hour).Unix()}), "algorithm"},
		{"alg HS512", signJWT(t, "HS512", testSecret, map[string]any{"room": "r", "peer": "p", "exp": time.Now().Add(time.Hour).Unix()}), "algorithm"},
		{"alg HS384", signJWT(t, "HS384", testSecret, map[string]any{"room": "r", "peer": "p", "exp": time.Now().Add(time.Hour).Unix()}), "algorithm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q []string
			if tc.token != "" {
				q = []string{"token", tc.token}
			}
			_, err := s.dial("r", "p", q...)
			var he *client.HandshakeError
			if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || !strings.Contains(he.Body, tc.want) {
				t.Fatalf("dial: %v, want HTTP 401 mentioning %q", err, tc.want)
			}
		})
	}
	if len(s.rooms.Rooms()) != 0 {
		t.Fatal("a refused peer created a room")
	}

	// The right token opens the socket; the peer works as usual.
	p := s.mustDial("r", "p", "token", good)
	var caps json.RawMessage
	p.must("getRouterRtpCapabilities", nil, &caps)

	// The broadcaster API takes the same token as a Bearer header.
	bearer := func(tk string) []string { return []string{"Authorization", "Bearer " + tk} }
	body := `{"id":"bc","displayName":"BC","device":{"name":"ffmpeg"}}`
	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		want                     int
	}{
		{"caps without token", "GET", "/rooms/r", "", nil, 401},
		{"caps, token of another room", "GET", "/rooms/r", "", bearer(tok(testSecret, signaling.Claims{Room: "x", Peer: "p"}, time.Minute)), 401},
		{"caps, expired token", "GET", "/rooms/r", "", bearer(signJWT(t, "HS256", testSecret, map[string]any{"room": "r", "exp": time.Now().Add(-time.Hour).Unix()})), 401},
		{"caps, alg none", "GET", "/rooms/r", "", bearer(signJWT(t, "none", "", map[string]any{"room": "r", "exp": time.Now().Add(time.Hour).Unix()})), 401},
		{"caps with a room token", "GET", "/rooms/r", "", bearer(tok(testSecret, signaling.Claims{Room: "r"}, time.Minute)), 200},
		{"create, token for another broadcaster", "POST", "/rooms/r/broadcasters", body, bearer(tok(testSecret, signaling.Claims{Room: "r", Peer: "other"}, time.Minute)), 401},
		{"create, bad signature", "POST", "/rooms/r/broadcasters", body, bearer(tok("another-secret-another-secret-xx", signaling.Claims{Room: "r", Peer: "bc"}, time.Minute)), 401},
		{"create", "POST", "/rooms/r/broadcasters", body, bearer(tok(testSecret, signaling.Claims{Room: "r", Peer: "bc"}, time.Minute)), 200},
		{"transport, token of another broadcaster", "POST", "/rooms/r/broadcasters/bc/transports", `{"type":"plain"}`, bearer(tok(testSecret, signaling.Claims{Room: "r", Peer: "p"}, time.Minute)), 401},
		{"delete without token", "DELETE", "/rooms/r/broadcasters/bc", "", nil, 401},
		{"delete, token of another room", "DELETE", "/rooms/r/broadcasters/bc", "", bearer(tok(testSecret, signaling.Claims{Room: "x", Peer: "bc"}, time.Minute)), 401},
		{"delete", "DELETE", "/rooms/r/broadcasters/bc", "", bearer(tok(testSecret, signaling.Claims{Room: "r", Peer: "bc"}, time.Minute)), 200},
	} {
		t.Run("broadcasters/"+tc.name, func(t *testing.T) {
			code, resp := s.do(tc.method, tc.path, tc.body, tc.header...)
			if code != tc.want {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, code, resp, tc.want)
			}
		})
	}

	// /admin needs an admin token.
	for _, tc := range []struct {
		name   string
		header []string
		want   int
	}{
		{"no token", nil, 401},
		{"peer token", bearer(good), 403},
		{"expired admin token", bearer(signJWT(t, "HS256", testSecret, map[string]any{"admin": true, "exp": time.Now().Add(-time.Hour).Unix()})), 401},
		{"admin token, alg none", bearer(signJWT(t, "none", "", map[string]any{"admin": true, "exp": time.Now().Add(time.Hour).Unix()})), 401},
		{"admin token", bearer(tok(testSecret, signaling.Claims{Admin: true}, time.Minute)), 200},
	} {
		t.Run("admin/"+tc.name, func(t *testing.T) {
			if code, resp := s.get("/admin/rooms", tc.header...); code != tc.want {
				t.Fatalf("/admin/rooms = %d %s, want %d", code, resp, tc.want)
			}
		})
	}
}

// signJWT builds a token by hand, so that the test does not depend on the
// library it tests: alg "none" has an empty signature.
func signJWT(t *testing.T, alg, secret string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b64(b)
	}
	head := enc(map[string]string{"alg": alg, "typ": "JWT"})
	body := enc(claims)
	if alg == "none" {
		return head + "." + body + "."
	}
	return head + "." + body + "." + b64(hmacSum(alg, secret, head+"."+body))
}

// tamper replaces a token's claims and keeps its signature.
func tamper(t *testing.T, token, claims string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", token)
	}
	return parts[0] + "." + b64([]byte(claims)) + "." + parts[2]
}

func TestAdminRoomsView(t *testing.T) {
	s := newOpsServer(t, 2, nil)
	a := s.mustDial("alpha", "a")
	a.joinWithTransports("Alice")
	s.mustDial("alpha", "b")
	s.mustDial("beta", "c").joinWithTransports("Carol")

	code, body := s.get("/admin/rooms")
	if code != http.StatusOK {
		t.Fatalf("/admin/rooms = %d %s", code, body)
	}
	var v struct {
		Rooms []struct {
			ID      string
			Routers []struct {
				ID          string
				WorkerIndex int
				WorkerPid   int
			}
			Peers []struct {
				ID, DisplayName                  string
				Joined                           bool
				Transports, Producers, Consumers int
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Rooms) != 2 || v.Rooms[0].ID != "alpha" || v.Rooms[1].ID != "beta" {
		t.Fatalf("rooms: %s", body)
	}
	alive := map[int]int{}
	for _, in := range s.pool.Infos() {
		alive[in.Index] = in.Pid
	}
	for _, r := range v.Rooms {
		if len(r.Routers) != 1 || r.Routers[0].ID == "" || alive[r.Routers[0].WorkerIndex] != r.Routers[0].WorkerPid {
			t.Fatalf("room %s routers %+v, workers %v", r.ID, r.Routers, alive)
		}
	}
	if v.Rooms[0].Routers[0].WorkerIndex == v.Rooms[1].Routers[0].WorkerIndex {
		t.Errorf("two rooms on one worker of two: %s", body)
	}
	peers := v.Rooms[0].Peers
	if len(peers) != 2 || peers[0].ID != "a" || !peers[0].Joined || peers[0].DisplayName != "Alice" || peers[0].Transports != 2 ||
		peers[1].ID != "b" || peers[1].Joined || peers[1].Transports != 0 {
		t.Fatalf("alpha's peers: %+v", peers)
	}
}

func TestAllowedOrigins(t *testing.T) {
	s := newOpsServer(t, 1, func(o *signaling.Options) {
		o.Limits.CheckOrigin = signaling.AllowOrigins([]string{"https://app.example.com", "http://localhost:3000/"})
	})
	dial := func(origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), settle)
		defer cancel()
		opts := &client.DialOptions{}
		if origin != "" {
			opts.Header = http.Header{"Origin": {origin}}
		}
		c, err := client.Dial(ctx, s.url, "o", fmt.Sprint("p", time.Now().UnixNano()), opts)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	for _, ok := range []string{"https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "http://localhost:3000", ""} {
		if err := dial(ok); err != nil {
			t.Errorf("origin %q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"https://evil.example.com", "http://app.example.com", "https://app.example.com:8443"} {
		wantHTTP(t, dial(bad), http.StatusForbidden)
	}
	if signaling.AllowOrigins(nil) != nil {
		t.Error("an empty allow-list must allow any origin (nil CheckOrigin)")
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func hmacSum(alg, secret, data string) []byte {
	h := map[string]func() hash.Hash{"HS256": sha256.New, "HS384": sha512.New384, "HS512": sha512.New}[alg]
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(data))
	return m.Sum(nil)
}

// A room spread over two workers lists both routers, each with its worker.
func TestAdminRoomsListsEveryRouterOfASpreadRoom(t *testing.T) {
	s := newOpsServer(t, 2, nil, func(o *room.Options) { o.RouterConsumerBudget = 4 })
	a := s.mustDial("big", "a")
	a.joinWithTransports("A")
	a.must("produce", client.ProduceRequest{TransportID: a.send.ID, Kind: "audio", RtpParameters: json.RawMessage(
		`{"codecs":[{"mimeType":"audio/opus","payloadType":111,"clockRate":48000,"channels":2}],"headerExtensions":[],"encodings":[{"ssrc":4343}],"rtcp":{"cname":"s"}}`)}, nil)
	s.mustDial("big", "b").joinWithTransports("B") // consumes a's audio
	testutil.Eventually(t, settle, func() bool { return s.scrape()["mediasoup_server_consumers"] == 1 },
		"b's consumer not created")
	s.mustDial("big", "c").joinWithTransports("C") // on a router of the other worker

	_, body := s.get("/admin/rooms")
	var v struct {
		Rooms []struct {
			Routers []struct {
				ID          string
				WorkerIndex int
				WorkerPid   int
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || len(v.Rooms) != 1 {
		t.Fatalf("/admin/rooms: %s (%v)", body, err)
	}
	rts := v.Rooms[0].Routers
	pids := map[int]int{}
	for _, in := range s.pool.Infos() {
		pids[in.Index] = in.Pid
	}
	if len(rts) != 2 || rts[0].WorkerIndex == rts[1].WorkerIndex ||
		rts[0].WorkerPid != pids[rts[0].WorkerIndex] || rts[1].WorkerPid != pids[rts[1].WorkerIndex] {
		t.Fatalf("routers %+v, workers %v", rts, pids)
	}
}

// One node (no Redis): /admin/cluster lists this node alone, with the
// rooms it holds.
func TestAdminClusterOneNode(t *testing.T) {
	var rooms *room.Manager
	s := newOpsServer(t, 1, func(o *signaling.Options) {
		rooms = o.Rooms
		o.Placement = &cluster.Local{ID: "solo", Stats: func() (cluster.Load, []string) {
			var ids []string
			for _, r := range rooms.Rooms() {
				ids = append(ids, r.ID())
			}
			return cluster.Load{Rooms: len(ids), WorkersAlive: 1}, ids
		}}
	})
	s.mustDial("gamma", "a").joinWithTransports("A")
	code, body := s.get("/admin/cluster")
	if code != http.StatusOK {
		t.Fatalf("/admin/cluster = %d %s", code, body)
	}
	var v struct {
		Node  string
		Nodes []cluster.NodeInfo
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if v.Node != "solo" || len(v.Nodes) != 1 || v.Nodes[0].ID != "solo" || len(v.Nodes[0].Rooms) != 1 ||
		v.Nodes[0].Rooms[0] != "gamma" || v.Nodes[0].Load.Rooms != 1 {
		t.Fatalf("/admin/cluster: %s", body)
	}
}

// /debug/pprof/ exists only when asked for, and then behind an admin token.
func TestPprofBehindAdminToken(t *testing.T) {
	off := newOpsServer(t, 1, nil)
	if code, _ := off.get("/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without Pprof = %d, want 404", code)
	}
	s := newOpsServer(t, 1, func(o *signaling.Options) { o.Auth = signaling.NewAuth(testSecret); o.Pprof = true })
	tk, err := signaling.IssueToken(testSecret, signaling.Claims{Admin: true}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	admin := []string{"Authorization", "Bearer " + tk}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"} {
		if code, _ := s.get(path); code != http.StatusUnauthorized {
			t.Fatalf("%s without a token = %d, want 401", path, code)
		}
		if code, body := s.get(path, admin...); code != http.StatusOK || len(body) == 0 {
			t.Fatalf("%s with an admin token = %d (%d bytes), want 200", path, code, len(body))
		}
	}
	if code, body := s.get("/debug/pprof/goroutine?debug=1", admin...); !strings.Contains(body, "goroutine") {
		t.Fatalf("goroutine profile = %d %.200s", code, body)
	}
}
