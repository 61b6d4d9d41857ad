// Package testutil holds helpers shared by the integration tests: locating the
// real mediasoup-worker binary and finding free ports on loopback.
package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/goleak"
)

// WorkerBin returns the mediasoup-worker binary the tests run: MEDIASOUP_WORKER_BIN,
// else bin/mediasoup-worker at the repository root. A missing binary fails the
// test with the reason: these tests need the real worker and never skip.
func WorkerBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("MEDIASOUP_WORKER_BIN")
	if bin == "" {
		if root, err := RepoRoot(); err == nil {
			bin = filepath.Join(root, "bin", "mediasoup-worker")
		}
	}
	st, err := os.Stat(bin)
	if bin == "" || err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("mediasoup-worker binary not found (MEDIASOUP_WORKER_BIN=%q, tried %q): run `make worker`, or run the tests with `make test`", os.Getenv("MEDIASOUP_WORKER_BIN"), bin)
	}
	return bin
}

// RepoRoot walks up from the working directory to the folder holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePorts returns the first of n consecutive ports that are free for both
// UDP and TCP on 127.0.0.1 right now (the caller binds them soon after).
// Candidates are drawn from a range shifted by the process id so that test
// binaries running in parallel rarely probe the same ports, and lie outside
// the kernel's ephemeral range (see probeRange).
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	lo, hi := probeRange()
	start := lo + (os.Getpid()*97+int(time.Now().UnixNano()/1000)%9973)%(hi-lo-n)
	portsMu.Lock()
	defer portsMu.Unlock()
	for tries := 0; tries < 500; tries++ {
		base := lo + (start-lo+tries*(n+7))%(hi-lo-n)
		if !portsGivenLocked(base, n) && portsFree(base, n) {
			for p := base; p < base+n; p++ {
				portsGiven[p] = true
			}
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return 0
}

// probeRange is where FreePorts looks: below the kernel's ephemeral port
// range (net.ipv4.ip_local_port_range, 32768–60999 by default), or above it
// when too little is left below. A port inside it can be taken between the
// probe and the caller's bind by any process's outgoing connection or
// port-0 listener, which the test binaries running in parallel make by the
// thousand: seen in CI as a server child failing with "bind: address
// already in use" on the port it was handed.
func probeRange() (lo, hi int) {
	const floor, minSpan = 10000, 4000
	ephLo, ephHi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l <= h {
				ephLo, ephHi = l, h
			}
		}
	}
	if ephLo-floor >= minSpan {
		return floor, ephLo
	}
	if 65536-(ephHi+1) >= minSpan {
		return ephHi + 1, 65536
	}
	return floor, 65536 // no room outside it: probe everywhere
}

// Ports FreePorts handed out in this process: never twice, so that tests
// running in parallel do not get the same ports before their workers bind
// them.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func portsGivenLocked(base, n int) bool {
	for p := base; p < base+n; p++ {
		if portsGiven[p] {
			return true
		}
	}
	return false
}

func portsFree(base, n int) bool {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for p := base; p < base+n; p++ {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u.Close)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, l.Close)
	}
	return true
}

// Eventually polls cond every 10 ms until it returns true or timeout passes,
// then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ProcessAlive reports whether a process with this pid exists (zombies count
// as gone only once reaped, which the worker's owner does).
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// WorkerChildren lists the pids of mediasoup-worker processes whose parent is
// this process (Linux /proc).
func WorkerChildren() []int { return WorkerChildrenOf(os.Getpid()) }

// WorkerChildrenOf lists the mediasoup-worker processes whose parent is
// the process me (a server run as a child process).
func WorkerChildrenOf(me int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; the kernel cuts comm to 15 bytes
		// ("mediasoup-worke"), and comm may hold spaces and parentheses.
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(stat[open+1 : end])
		f := strings.Fields(string(stat[end+1:]))
		if len(f) >= 2 && f[1] == strconv.Itoa(me) && strings.HasPrefix("mediasoup-worker", comm) && len(comm) >= len("mediasoup-w") {
			out = append(out, pid)
		}
	}
	return out
}

// LockedBuffer is a bytes.Buffer safe for concurrent writers and readers:
// a child process's output, a logger's goroutines, read while they write.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WorkerStartLeaks returns goleak options that allow what mediasoup-go
// (v2.4.1, still v2.6.0) keeps forever of each timed-out worker start (its process waiter,
// blocked sending on a channel nobody reads, and its channel's reader): at
// most worker.AbandonedStarts() of each. With more of them, or with none
// abandoned, it allows nothing and goleak reports them.
func WorkerStartLeaks() []goleak.Option {
	n := worker.AbandonedStarts()
	if n == 0 {
		return nil
	}
	const waiter = "github.com/jiyeyuran/mediasoup-go/v2.(*Worker).wait"
	const reader = "github.com/jiyeyuran/mediasoup-go/v2/internal/channel.(*Channel).readLoop"
	waiters, readers := 0, 0
	for _, g := range Goroutines() {
		header, _, _ := strings.Cut(g, "\n")
		switch {
		case strings.Contains(header, "[chan send") && strings.Contains(g, waiter+"("):
			waiters++
		case strings.Contains(g, reader+"("):
			readers++
		}
	}
	if int64(waiters) > n || int64(readers) > n {
		return nil
	}
	return []goleak.Option{goleak.IgnoreAnyFunction(waiter), goleak.IgnoreAnyFunction(reader)}
}

// Goroutines returns the stack of every goroutine (runtime.Stack of all),
// one entry per goroutine: its header line, then its frames.
func Goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		m := runtime.Stack(buf, true)
		if m < len(buf) {
			return strings.Split(string(buf[:m]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// API does one HTTP request for a test (the broadcaster API): body is sent
// as is when it is a string, as JSON otherwise (nil: no body). A 200 answer
// must be JSON and is decoded into out (when not nil). It returns the status
// and the body (the reason of an error). Bounded by 30 s, as a test's waits.
func API(t testing.TB, method, url string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	isJSON := false
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, isJSON = bytes.NewReader(j), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	if res.StatusCode == http.StatusOK {
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, url, ct)
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				t.Fatalf("%s %s: %v in %s", method, url, err, data)
			}
		}
	}
	return res.StatusCode, string(data)
}

// DieWithParent makes cmd's process get SIGKILL when the test process dies
// (Linux's parent-death signal), so that a test binary that crashed or was
// killed leaves no server, Redis or ffmpeg running (one left ffmpeg
// encoding on a core for an hour). Call before cmd.Start.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// NoLeakedGoroutines fails t if goroutines other than those opts allow
// remain after giving them up to 10 s to end (a closed connection's
// goroutines end a moment after its socket does).
func NoLeakedGoroutines(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines leaked: %v", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
