package reliability

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"go.uber.org/goleak"
)

// The quick versions run by default (go test -race ./... in make test, a
// minute or so in all); -full runs the long ones (make reliability). Each
// bound can also be set alone.
var (
	fullFlag   = flag.Bool("full", false, "run the full versions: a 3-minute churn soak, thousands of connections, several worker kills")
	soakFlag   = flag.Duration("soak", 0, "churn soak duration (default 15s; 3m with -full)")
	connsFlag  = flag.Int("conns", 0, "idle peers to connect in TestManyIdlePeers (default 300; 15000 with -full, capped by RLIMIT_NOFILE)")
	killsFlag  = flag.Int("kills", 0, "worker kills in TestWorkerCrashMidCall (default 1; 5 with -full)")
	reportFlag = flag.String("report", "", "also write the figures to this file (make reliability prints it)")
	heapFlag   = flag.String("heapprofile", "", "write a heap profile of the server process at the end of each churn soak (FILE.<variant>)")
	logFlag    = flag.String("serverlog", "", "append every warning and error the servers log to this file")
)

func pick[T comparable](flagValue, quick, full T) T {
	var zero T
	if flagValue != zero {
		return flagValue
	}
	if *fullFlag {
		return full
	}
	return quick
}

// fileLimit is RLIMIT_NOFILE after TestMain raised it.
var fileLimit uint64

func TestMain(m *testing.M) {
	if os.Getenv(clientProcessEnv) != "" {
		// This binary was started by TestManyIdlePeers as its client process.
		os.Exit(clientProcess())
	}
	fileLimit = raiseFileLimit()
	loadStart := loadAvg()
	start := time.Now()
	// goleak.VerifyTestMain, except that the allowed goroutines are those
	// known once the tests ran (leakOptions), and that it waits up to 10 s
	// for the last connection goroutines to end.
	code := m.Run()
	if code == 0 {
		if err := findLeaks(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines leaked by the tests: %v\n", err)
			code = 1
		}
		// No mediasoup-worker process outlives its pool.
		if kids := testutil.WorkerChildren(); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "mediasoup-worker processes left behind: %v\n", kids)
			code = 1
		}
	}
	printFigures(loadStart, time.Since(start))
	os.Exit(code)
}

// leakOptions are the goroutines allowed to outlive a test, each with the
// reason it is not a leak.
func leakOptions() []goleak.Option {
	// Only goroutines stuck forever on a bug that came back (wedge_test.go), once
	// seen, and what mediasoup-go keeps of a worker start that timed out
	// (worker.AbandonedStarts; its process is killed).
	return append(wedgeLeakOptions(), testutil.WorkerStartLeaks()...)
}

func findLeaks() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(leakOptions()...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkLeaks fails t if goroutines other than those allowed (opts) remain,
// after giving them up to 10 s to end: a closed connection's goroutines end
// a moment after their socket does.
func checkLeaks(t *testing.T, opts ...goleak.Option) {
	t.Helper()
	testutil.NoLeakedGoroutines(t, append(leakOptions(), opts...)...)
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit: every
// idle peer costs two descriptors in this process when the clients run
// in-process, one when they run in the client process.
func raiseFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// ---- figures ----

type figureLine struct{ section, name, value string }

var figures struct {
	sync.Mutex
	lines []figureLine
}

// figure records one measured figure for the summary TestMain prints and
// logs it on the test.
func figure(t testing.TB, section, name, format string, args ...any) {
	t.Helper()
	v := fmt.Sprintf(format, args...)
	t.Logf("figure [%s] %s: %s", section, name, v)
	figures.Lock()
	figures.lines = append(figures.lines, figureLine{section, name, v})
	figures.Unlock()
}

func printFigures(loadStart string, took time.Duration) {
	figures.Lock()
	defer figures.Unlock()
	if len(figures.lines) == 0 {
		return
	}
	mode := "quick"
	if *fullFlag {
		mode = "full"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n==== reliability figures (%s versions, race=%v, %s, %d CPU, %s/%s, RLIMIT_NOFILE %d) ====\n",
		mode, raceEnabled, runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, fileLimit)
	fmt.Fprintf(&b, "load average at start: %s; at end: %s; took %v\n", loadStart, loadAvg(), took.Round(time.Second))
	// Sections in the order they first appeared, each with all its lines.
	var sections []string
	bySection := map[string][]figureLine{}
	for _, l := range figures.lines {
		if _, ok := bySection[l.section]; !ok {
			sections = append(sections, l.section)
		}
		bySection[l.section] = append(bySection[l.section], l)
	}
	for _, sec := range sections {
		fmt.Fprintf(&b, "\n[%s]\n", sec)
		for _, l := range bySection[sec] {
			fmt.Fprintf(&b, "  %-58s %s\n", l.name, l.value)
		}
	}
	fmt.Fprint(os.Stdout, b.String())
	if *reportFlag != "" {
		if err := os.WriteFile(*reportFlag, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "writing %s: %v\n", *reportFlag, err)
		}
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// fixedBug fails t: a server bug that RELIABILITY.md ("Found") records as
// fixed is back. There are no expected failures: every bug found so far is
// fixed, and a test that finds one again fails.
func fixedBug(t *testing.T, id, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	figure(t, "regressions", id, "FAILED: %s", msg)
	t.Errorf("fixed bug %s is back: %s", id, msg)
}
