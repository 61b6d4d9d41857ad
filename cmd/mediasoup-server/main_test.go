package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
)

// The tests run the real server as a child process: this test binary
// re-executed with MEDIASOUP_SERVER_TEST_MAIN=1 behaves as main().
func TestMain(m *testing.M) {
	if os.Getenv("MEDIASOUP_SERVER_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// settle bounds every wait for the server child process (healthy, a worker
// replaced, peers closed, exited): the tests poll or wait for the event, and
// the bound only ends a test that would wait forever; a busy machine (-race,
// 2 cores, other test binaries) never comes close to it.
const settle = 60 * time.Second

type server struct {
	cmd    *exec.Cmd
	out    *testutil.LockedBuffer
	exited chan error
}

func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return startServerEnv(t, nil, args...)
}

// startServerEnv starts the server with extra environment variables.
func startServerEnv(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "MEDIASOUP_SERVER_TEST_MAIN=1"), env...)
	out := &testutil.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	testutil.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, out: out, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	return s
}

// eventually is testutil.Eventually that fails at once, with the server's
// exit status, when the server exits while the test waits for it.
func (s *server) eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	testutil.Eventually(t, settle, func() bool {
		select {
		case err := <-s.exited:
			s.exited <- err // for the cleanup
			t.Fatalf("the server exited (%v) while the test waited: %s", err, msg)
		default:
		}
		return cond()
	}, msg)
}

type health struct {
	Status  string `json:"status"`
	Workers []struct {
		Index   int    `json:"index"`
		Pid     int    `json:"pid"`
		State   string `json:"state"`
		RtcPort int    `json:"rtcPort"`
	} `json:"workers"`
}

func getHealth(base string) (int, health, error) {
	var h health
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return 0, h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h, err
}

func TestServerServesHealthAndExitsCleanlyOnSIGTERM(t *testing.T) {
	httpPort := testutil.FreePorts(t, 1)
	rtcPort := testutil.FreePorts(t, 2)
	s := startServer(t,
		"-listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"-workers", "2",
		"-rtc-port", fmt.Sprint(rtcPort),
		"-listen-ip", "127.0.0.1",
		"-worker-bin", testutil.WorkerBin(t),
		"-drain-grace", "0s",
		"-log-level", "info")
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)

	var h health
	s.eventually(t, func() bool {
		code, got, err := getHealth(base)
		h = got
		return err == nil && code == http.StatusOK
	}, "/healthz never answered 200")
	if h.Status != "ok" || len(h.Workers) != 2 {
		t.Fatalf("/healthz = %+v, want 2 workers, status ok", h)
	}
	var pids []int
	for i, w := range h.Workers {
		if w.State != "alive" || w.Pid <= 0 || w.RtcPort != rtcPort+i || !testutil.ProcessAlive(w.Pid) {
			t.Fatalf("worker %d: %+v", i, w)
		}
		pids = append(pids, w.Pid)
	}

	// A killed worker turns /healthz to 503 until its replacement is up.
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, settle, func() bool {
		code, got, err := getHealth(base)
		return err == nil && code == http.StatusOK && got.Workers[1].Pid != pids[1] && got.Workers[1].State == "alive"
	}, "worker 1 not replaced in /healthz")
	_, h, _ = getHealth(base)
	pids[1] = h.Workers[1].Pid

	// A joined peer is closed with 4000 (do not reconnect) on shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	peer, err := client.Dial(ctx, base, "room", "peer", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	var caps json.RawMessage
	if err := peer.Request(ctx, "getRouterRtpCapabilities", nil, &caps); err != nil {
		t.Fatal(err)
	}
	if err := peer.Request(ctx, "join", client.JoinRequest{DisplayName: "p", RtpCapabilities: caps}, nil); err != nil {
		t.Fatal(err)
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-peer.Done():
		if peer.CloseCode() != 4000 {
			t.Fatalf("peer closed with %d on shutdown, want 4000", peer.CloseCode())
		}
	case <-time.After(settle):
		t.Fatal("peer not closed on shutdown")
	}
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("server exited with %v after SIGTERM", err)
		}
	case <-time.After(settle):
		t.Fatalf("server did not exit within %v of SIGTERM", settle)
	}
	for _, pid := range pids {
		if testutil.ProcessAlive(pid) {
			t.Fatalf("worker pid %d survived the server", pid)
		}
	}
	if !strings.Contains(s.out.String(), "listening") {
		t.Fatalf("no 'listening' line with the URL in the output")
	}
}

func TestServerRefusesBadConfiguration(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"-no-such-flag"}, 2, "no-such-flag"},
		{"bad port", []string{"-rtc-port", "70000"}, 2, "rtcPort"},
		{"missing worker", []string{"-worker-bin", "/nonexistent/mediasoup-worker", "-listen", "127.0.0.1:0"}, 1, "/nonexistent/mediasoup-worker"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.args...)
			select {
			case err := <-s.exited:
				s.exited <- err
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				if code != tc.code || !strings.Contains(s.out.String(), tc.want) {
					t.Fatalf("exit %d (want %d), output:\n%s\nwant it to mention %q", code, tc.code, s.out.String(), tc.want)
				}
			case <-time.After(settle):
				t.Fatal("server kept running with a bad configuration")
			}
		})
	}
}
