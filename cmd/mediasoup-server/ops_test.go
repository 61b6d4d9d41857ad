package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/signaling"
)

// startOne starts the server with one worker on free loopback ports and
// waits for /healthz; it returns the server and its base URL.
func startOne(t *testing.T, env []string, scheme string, args ...string) (*server, string, *http.Client) {
	t.Helper()
	httpPort := testutil.FreePorts(t, 1)
	s := startServerEnv(t, env, append([]string{
		"-listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"-workers", "1",
		"-rtc-port", fmt.Sprint(testutil.FreePorts(t, 1)),
		"-listen-ip", "127.0.0.1",
		"-worker-bin", testutil.WorkerBin(t),
	}, args...)...)
	base := fmt.Sprintf("%s://127.0.0.1:%d", scheme, httpPort)
	hc := &http.Client{Timeout: settle}
	s.eventually(t, func() bool {
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "/healthz never answered 200")
	return s, base, hc
}

func (s *server) workerPids(t *testing.T, hc *http.Client, base string) []int {
	t.Helper()
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, w := range h.Workers {
		pids = append(pids, w.Pid)
	}
	return pids
}

// waitExit waits for the server to exit and returns its exit code.
func (s *server) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("server did not exit within %v", within)
		return -1
	}
}

func readyz(hc *http.Client, base string) (int, string) {
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func dialPeer(t *testing.T, base, roomID, peerID string, opts *client.DialOptions) (*client.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	c, err := client.Dial(ctx, base, roomID, peerID, opts)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

func request(c *client.Conn, method string, data, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	return c.Request(ctx, method, data, result)
}

// The drain sequence: SIGTERM flips readiness and refuses new peers and
// joins while the rooms run on for the grace period; then every peer is
// closed with 4000, the server exits 0 and leaves no worker behind. The
// grace (10 s) is what the checks made during it may take: a few round
// trips, logged, that a busy machine stretches but never to 10 s.
func TestDrainThenCloseWith4000(t *testing.T) {
	const grace = 10 * time.Second
	s, base, hc := startOne(t, nil, "http", "-drain-grace", grace.String())
	if code, body := readyz(hc, base); code != http.StatusOK {
		t.Fatalf("/readyz = %d %s before the drain", code, body)
	}
	pids := s.workerPids(t, hc, base)

	joined, err := dialPeer(t, base, "room", "joined", nil)
	if err != nil {
		t.Fatal(err)
	}
	var caps json.RawMessage
	if err := request(joined, "getRouterRtpCapabilities", nil, &caps); err != nil {
		t.Fatal(err)
	}
	if err := request(joined, "join", client.JoinRequest{DisplayName: "J", RtpCapabilities: caps}, nil); err != nil {
		t.Fatal(err)
	}
	waiting, err := dialPeer(t, base, "room", "waiting", nil)
	if err != nil {
		t.Fatal(err)
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.Eventually(t, grace, func() bool {
		code, body := readyz(hc, base)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	}, "/readyz did not turn 503 draining")

	_, err = dialPeer(t, base, "room", "late", nil)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable {
		t.Fatalf("new peer while draining: %v, want HTTP 503", err)
	}
	var re *client.ResponseError
	if err := request(waiting, "join", client.JoinRequest{DisplayName: "W", RtpCapabilities: caps}, nil); !errors.As(err, &re) || re.Code != 503 {
		t.Fatalf("join while draining: %v, want 503", err)
	}
	// The room still works during the grace period.
	if err := request(joined, "changeDisplayName", map[string]string{"displayName": "J2"}, nil); err != nil {
		t.Fatalf("joined peer during the grace period (%v after SIGTERM): %v", time.Since(start), err)
	}
	t.Logf("checks during the grace period done %v after SIGTERM (grace %v)", time.Since(start).Round(time.Millisecond), grace)

	for _, p := range []*client.Conn{joined, waiting} {
		select {
		case <-p.Done():
			if p.CloseCode() != 4000 {
				t.Fatalf("%s closed with %d, want 4000", p.PeerID(), p.CloseCode())
			}
		case <-time.After(grace + settle):
			t.Fatalf("%s not closed after the grace period", p.PeerID())
		}
	}
	d := time.Since(start)
	if d < grace-500*time.Millisecond {
		t.Fatalf("peers closed %v after SIGTERM, before the %v grace period", d, grace)
	}
	t.Logf("peers closed %v after SIGTERM (grace %v)", d.Round(time.Millisecond), grace)
	if code := s.waitExit(t, settle); code != 0 {
		t.Fatalf("exit code %d after the drain, want 0\n%s", code, s.out.String())
	}
	for _, pid := range pids {
		if testutil.ProcessAlive(pid) {
			t.Fatalf("worker pid %d survived the server", pid)
		}
	}
}

// With no rooms the drain does not wait for the grace period (10 minutes
// here: exiting within settle is not waiting for it); during one, a second
// signal exits at once, and no worker is left behind either way.
func TestDrainShortcuts(t *testing.T) {
	t.Run("no rooms", func(t *testing.T) {
		s, _, _ := startOne(t, nil, "http", "-drain-grace", "10m")
		start := time.Now()
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := s.waitExit(t, settle); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		t.Logf("exited %v after SIGTERM (grace 10m)", time.Since(start).Round(time.Millisecond))
	})
	t.Run("second signal", func(t *testing.T) {
		s, base, hc := startOne(t, nil, "http", "-drain-grace", "10m")
		pids := s.workerPids(t, hc, base)
		if _, err := dialPeer(t, base, "room", "p", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, settle, func() bool {
			code, _ := readyz(hc, base)
			return code == http.StatusServiceUnavailable
		}, "/readyz did not turn 503")
		start := time.Now()
		if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := s.waitExit(t, settle); code != 1 {
			t.Fatalf("exit code %d after a second signal, want 1", code)
		}
		t.Logf("exited %v after the second signal (grace 10m)", time.Since(start).Round(time.Millisecond))
		for _, pid := range pids {
			testutil.Eventually(t, settle, func() bool { return !testutil.ProcessAlive(pid) },
				"worker pid %d survived the server", pid)
		}
	})
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "mediasoup-server test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSServesHTTPSAndWSS(t *testing.T) {
	certFile, keyFile, roots := selfSigned(t)
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	httpPort := testutil.FreePorts(t, 1)
	s := startServer(t,
		"-listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"-workers", "1",
		"-rtc-port", fmt.Sprint(testutil.FreePorts(t, 1)),
		"-listen-ip", "127.0.0.1",
		"-worker-bin", testutil.WorkerBin(t),
		"-tls-cert", certFile, "-tls-key", keyFile)
	base := fmt.Sprintf("https://127.0.0.1:%d", httpPort)
	hc := &http.Client{Timeout: settle, Transport: &http.Transport{TLSClientConfig: tlsConf}}
	var h health
	s.eventually(t, func() bool {
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil
	}, "/healthz over HTTPS never answered 200")
	if h.Status != "ok" || len(h.Workers) != 1 {
		t.Fatalf("/healthz = %+v", h)
	}

	// WSS with the client package, trusting the test's certificate.
	c, err := dialPeer(t, strings.Replace(base, "https://", "wss://", 1), "tls-room", "p", &client.DialOptions{TLSConfig: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	var caps struct {
		Codecs []json.RawMessage `json:"codecs"`
	}
	if err := request(c, "getRouterRtpCapabilities", nil, &caps); err != nil || len(caps.Codecs) == 0 {
		t.Fatalf("getRouterRtpCapabilities over WSS: %v %v", caps, err)
	}
	// An untrusted certificate is refused by the client, as it should be.
	if _, err := dialPeer(t, base, "tls-room", "q", &client.DialOptions{TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}); err == nil {
		t.Fatal("dial trusted the self-signed certificate without being told to")
	}
}

const secret = "0123456789abcdef0123456789abcdef-main-test"

func TestTokenCommand(t *testing.T) {
	run := func(env map[string]string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runToken(args, func(k string) string { return env[k] }, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := run(nil, "-secret", secret, "-room", "r1", "-peer", "p1", "-ttl", "90s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var c signaling.Claims
	tok, err := jwt.ParseWithClaims(strings.TrimSpace(out), &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || !tok.Valid {
		t.Fatalf("printed token %q: %v", out, err)
	}
	if c.Room != "r1" || c.Peer != "p1" || c.Admin {
		t.Fatalf("claims %+v", c)
	}
	if ttl := time.Until(c.ExpiresAt.Time); ttl < 80*time.Second || ttl > 91*time.Second {
		t.Fatalf("expires in %v, want 90s", ttl)
	}

	code, out, _ = run(map[string]string{"MEDIASOUP_SERVER_AUTH_SECRET": secret}, "-admin")
	if code != 0 {
		t.Fatalf("admin from env secret: exit %d", code)
	}
	c = signaling.Claims{}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(out), &c, func(*jwt.Token) (any, error) { return []byte(secret), nil }); err != nil || !c.Admin {
		t.Fatalf("admin token %q: %+v %v", out, c, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no secret", []string{"-room", "r", "-peer", "p"}, "no secret"},
		{"short secret", []string{"-secret", "short", "-room", "r", "-peer", "p"}, "at least"},
		{"no peer", []string{"-secret", secret, "-room", "r"}, "-peer"},
		{"bad ttl", []string{"-secret", secret, "-admin", "-ttl", "-1s"}, "ttl"},
		{"stray argument", []string{"-secret", secret, "-admin", "extra"}, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(nil, tc.args...)
			if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errs, tc.want)
			}
		})
	}
}

// Auth end to end: the secret from the environment, a token from the
// `token` subcommand of the same binary.
func TestAuthWithTokenSubcommand(t *testing.T) {
	env := []string{"MEDIASOUP_SERVER_AUTH_SECRET=" + secret}
	_, base, hc := startOne(t, env, "http")
	cmd := exec.Command(os.Args[0], "token", "-room", "r", "-peer", "p", "-ttl", "1m")
	cmd.Env = append(append(os.Environ(), "MEDIASOUP_SERVER_TEST_MAIN=1"), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token subcommand: %v", err)
	}
	token := strings.TrimSpace(string(out))

	_, err = dialPeer(t, base, "r", "p", nil)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("no token: %v, want HTTP 401", err)
	}
	_, err = dialPeer(t, base, "r", "other", &client.DialOptions{Query: map[string][]string{"token": {token}}})
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("token of another peer: %v, want HTTP 401", err)
	}
	c, err := dialPeer(t, base, "r", "p", &client.DialOptions{Query: map[string][]string{"token": {token}}})
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if err := request(c, "getRouterRtpCapabilities", nil, nil); err != nil {
		t.Fatal(err)
	}
	// /metrics, /healthz and /readyz stay open; /admin does not.
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/admin/rooms": 401} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
