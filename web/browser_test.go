// Package web_test runs the browser client (web/dist, built by `make web`) in
// headless Chromium against the real server and real mediasoup workers: two
// pages join one room, each decodes the other's video, receives the other's
// audio, and a chat message crosses both ways over the data channels.
//
// Needs Debian's chromium (`make deps`) and the bundle (`make web`); without
// them the test fails with the reason, it never skips. The browser is driven
// over the DevTools protocol with chromedp; the server is built from this
// checkout into a temporary folder (with -race when the test runs with -race,
// and a data race it reports fails the test). A screenshot of the first page
// is saved to out/browser-e2e.png.
package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
)

// chromiumBin is Debian's Chromium; CHROMIUM_BIN overrides it.
const chromiumBin = "/usr/bin/chromium"

// raceEnabled is set by race_test.go when the test binary runs with -race.
var raceEnabled bool

// The bounds only end a test that would wait forever: every wait polls the
// pages, and a busy machine (-race, 2 cores, other test binaries beside
// Chromium) never comes close to them. How long things took is logged.
const (
	buildBudget  = 10 * time.Minute // go build of the server: ~1 s warm, ~30 s on an empty cache
	testBudget   = 5 * time.Minute  // from the server's start to the end
	mediaTimeout = 2 * time.Minute  // page open → media and data channels flowing
	chatTimeout  = time.Minute      // a name or chat message crossing, a tile after the reconnect
	stepTimeout  = time.Minute      // one DevTools action or stats read; the server's start; its stop
	pollInterval = 100 * time.Millisecond
)

// browserParts finds what a browser test needs, failing with the reason
// when a part is missing: the repository, the page bundle, Chromium, the
// worker, and the server built from this tree.
func browserParts(t *testing.T) (root, dist, chromium, workerBin, serverBin string) {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dist = filepath.Join(root, "web", "dist")
	requireBundle(t, root, dist)
	chromium = requireChromium(t)
	workerBin = testutil.WorkerBin(t)
	serverBin = buildServer(t, root)
	return root, dist, chromium, workerBin, serverBin
}

func TestBrowserTwoPeersMediaAndChat(t *testing.T) {
	started := time.Now()
	root, dist, chromium, workerBin, serverBin := browserParts(t)
	buildTime := time.Since(started)

	// Cancelled last (cleanups run in reverse): the browser and the pages
	// stay readable while the failure dumps run.
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	t.Cleanup(cancel)

	srv := startServer(t, root, dist, serverBin, workerBin)
	srv.buildTime = buildTime
	t.Logf("server up at %s (build %v, start %v)", srv.base, srv.buildTime.Round(time.Millisecond), srv.startTime.Round(time.Millisecond))

	browser := startBrowser(t, ctx, chromium)
	a := openTab(t, browser, "A", true)
	b := openTab(t, browser, "B", false)

	// Page A opens the server's URL with no room: the page picks a random room
	// and puts it in the address bar (dropping ?displayName=). Page B opens
	// that link, as a person it was sent to.
	a.navigate(t, srv.base+"/?displayName=Alice")
	link := run(t, a, chromedp.Evaluate[string](`location.href`))
	if !strings.Contains(link, "?roomId=") || strings.Contains(link, "displayName") {
		t.Fatalf("page A's address should be the room's link (?roomId= only): %s", link)
	}
	a.mustWait(t, mediaTimeout, "page A joined", func(s *pageStats) (bool, string) {
		return s.Joined && s.ChatProducer == "open", fmt.Sprintf("joined=%v chat=%s", s.Joined, s.ChatProducer)
	})

	b.navigate(t, link+"&displayName=Robert")
	sa, sb := a.mustStats(t), b.mustStats(t)
	if sa.RoomID != sb.RoomID || sa.PeerID == sb.PeerID {
		t.Fatalf("want one room, two peers: A=%s/%s B=%s/%s", sa.RoomID, sa.PeerID, sb.RoomID, sb.PeerID)
	}

	// Both ways: video decoded, audio packets in, the chat channel open.
	ids := map[*tab]string{a: sa.PeerID, b: sb.PeerID}
	waitMediaBothWays(t, a, b, ids, nil, "")
	for _, p := range []*tab{a, b} {
		s := p.mustStats(t)
		t.Logf("page %s: open → first decoded remote frame %v, %v after page B opened (in-page, since navigation: WebSocket open %s, joined %s, first remote frame %s)",
			p.name, p.firstFrame.Sub(p.opened).Round(time.Millisecond), p.firstFrame.Sub(b.opened).Round(time.Millisecond),
			s.mark("wsOpen"), s.mark("joined"), s.mark("firstRemoteFrame"))
	}

	// Names: A's reached B with join's peer list; B's change reaches A
	// (changeDisplayName → peerDisplayNameChanged).
	run(t, b, chromedp.Evaluate[chromedp.Void](`window.__app.setDisplayName("Bob")`, chromedp.EvalAwaitPromise))
	a.mustWait(t, chatTimeout, "Bob's name on page A", func(s *pageStats) (bool, string) {
		return s.peerName(sb.PeerID) == "Bob", "peers=" + s.peerList()
	})
	b.mustWait(t, chatTimeout, "Alice's name on page B", func(s *pageStats) (bool, string) {
		return s.peerName(sa.PeerID) == "Alice", "peers=" + s.peerList()
	})

	// Chat both ways over the data channels.
	msgA, msgB := "Hello from Alice — ça va ?", "Hi Alice, Bob here."
	run(t, a, chromedp.Evaluate[bool](`window.__app.send(`+strconv.Quote(msgA)+`)`))
	run(t, b, chromedp.Evaluate[bool](`window.__app.send(`+strconv.Quote(msgB)+`)`))
	b.mustWait(t, chatTimeout, "A's chat message on page B", func(s *pageStats) (bool, string) {
		return s.hasChat(sa.PeerID, msgA), fmt.Sprintf("chat=%+v", s.Chat)
	})
	a.mustWait(t, chatTimeout, "B's chat message on page A", func(s *pageStats) (bool, string) {
		return s.hasChat(sb.PeerID, msgB), fmt.Sprintf("chat=%+v", s.Chat)
	})

	// The fake microphone beeps: give the active-speaker highlight a moment
	// (not required: the observer may be between beeps).
	speaker := a.poll(3*time.Second, func(s *pageStats) bool { return s.ActiveSpeaker != nil })
	t.Logf("active speaker seen on page A: %v", speaker)

	for _, p := range []*tab{a, b} {
		if s := p.mustStats(t); len(s.Errors) > 0 {
			t.Errorf("page %s reported errors: %q", p.name, s.Errors)
		}
	}
	shot := filepath.Join(root, "out", "browser-e2e.png")
	a.screenshot(t, shot)
	b.screenshot(t, filepath.Join(root, "out", "browser-e2e-b.png"))

	// B's WebSocket drops (a close that is not 4000): protoo-client reconnects
	// with the same URL, the server replaces B's old peer, B joins again, and
	// media and chat flow again both ways, on new consumers.
	old := map[string]bool{}
	for _, p := range []*tab{a, b} {
		for _, id := range p.mustStats(t).objectIDs() {
			old[id] = true
		}
	}
	dropped := time.Now()
	run(t, b, chromedp.Evaluate[chromedp.Void](`window.__app.dropConnection()`))
	waitMediaBothWays(t, a, b, ids, old, " after B's reconnect")
	t.Logf("reconnect: B's WebSocket dropped → media and chat flowing again both ways in %v", time.Since(dropped).Round(time.Millisecond))
	a.mustWait(t, chatTimeout, "one tile for B on page A after the reconnect", func(s *pageStats) (bool, string) {
		return len(s.Peers) == 1 && s.peerName(sb.PeerID) == "Bob", "peers=" + s.peerList()
	})
	msgBack := "Back again."
	run(t, b, chromedp.Evaluate[bool](`window.__app.send(`+strconv.Quote(msgBack)+`)`))
	a.mustWait(t, chatTimeout, "B's chat message on page A after the reconnect", func(s *pageStats) (bool, string) {
		return s.hasChat(sb.PeerID, msgBack), fmt.Sprintf("chat=%+v", s.Chat)
	})
	for _, p := range []*tab{a, b} {
		if s := p.mustStats(t); len(s.Errors) > 0 {
			t.Errorf("page %s reported errors after the reconnect: %q", p.name, s.Errors)
		}
	}
	t.Logf("screenshot: %s; whole test %v", shot, time.Since(started).Round(time.Millisecond))
}

// waitMediaBothWays waits, on both pages at once, until each decodes the
// other's video, receives its audio and has its chat channel open, counting
// only consumers whose ids are not in old. The first time, it records when
// each page decoded its first remote frame.
func waitMediaBothWays(t *testing.T, a, b *tab, ids map[*tab]string, old map[string]bool, when string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, pair := range [][2]*tab{{a, b}, {b, a}} {
		me, other := pair[0], pair[1]
		otherID := ids[other]
		wg.Add(1)
		go func() {
			defer wg.Done()
			me.waitFor(t, mediaTimeout, "media and chat from "+other.name+when, func(s *pageStats) (bool, string) {
				s.drop(old)
				if old == nil && me.firstFrame.IsZero() && s.framesFrom(otherID) > 0 {
					me.firstFrame = time.Now()
				}
				ok := s.framesFrom(otherID) > 0 && s.audioPacketsFrom(otherID) > 0 && s.chatOpenFrom(otherID)
				return ok, fmt.Sprintf("ws=%s send=%s recv=%s frames=%d audioPackets=%d chatFrom=%v consumers=%d",
					s.WS, s.SendTransport, s.RecvTransport, s.framesFrom(otherID), s.audioPacketsFrom(otherID), s.chatOpenFrom(otherID), len(s.Consumers))
			})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// ---------------------------------------------------------------- prerequisites

func requireBundle(t *testing.T, root, dist string) {
	t.Helper()
	var newest time.Time
	for _, f := range []string{"index.html", "app.js", "style.css"} {
		st, err := os.Stat(filepath.Join(dist, f))
		if err != nil {
			t.Fatalf("web bundle missing (%v): run `make web` (or `make deps web`), which builds web/dist with npm and esbuild", err)
		}
		if f == "app.js" {
			newest = st.ModTime()
		}
	}
	// A bundle older than its sources tests old code: say so.
	_ = filepath.WalkDir(filepath.Join(root, "web", "src"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if st, err := d.Info(); err == nil && st.ModTime().After(newest) {
			t.Fatalf("web bundle is older than %s: run `make web`", path)
		}
		return nil
	})
}

func requireChromium(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CHROMIUM_BIN")
	if bin == "" {
		bin = chromiumBin
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("Chromium not found at %s (CHROMIUM_BIN=%q): run `make deps`, which installs Debian's chromium and chromium-driver", bin, os.Getenv("CHROMIUM_BIN"))
	}
	return bin
}

// ---------------------------------------------------------------- the server

type server struct {
	base                 string
	buildTime, startTime time.Duration
}

// buildServer builds cmd/mediasoup-server from this checkout into a temporary
// folder, with -race when this test runs with it.
func buildServer(t *testing.T, root string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found to build the server: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mediasoup-server")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/mediasoup-server")
	ctx, cancel := context.WithTimeout(context.Background(), buildBudget)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// startServer runs the server on loopback with one worker; the cleanup stops
// it (SIGTERM, then SIGKILL) and fails the test on a data race in its output.
func startServer(t *testing.T, root, dist, bin, workerBin string, extra ...string) *server {
	t.Helper()
	srv := &server{}
	port := testutil.FreePorts(t, 2) // HTTP on port, the worker's WebRtcServer on port+1
	srv.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	t0 := time.Now()
	cmd := exec.Command(bin,
		"-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-workers", "1",
		"-rtc-port", strconv.Itoa(port+1),
		"-listen-ip", "127.0.0.1",
		"-web-dir", dist,
		"-worker-bin", workerBin,
		"-log-level", "info",
	)
	cmd.Args = append(cmd.Args, extra...)
	cmd.Dir = root
	logs := &testutil.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	testutil.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stepTimeout):
			// (its drain grace is the default 10 s, if a room is left)
			t.Errorf("server did not stop within %v of SIGTERM: killing it", stepTimeout)
			_ = cmd.Process.Kill()
			<-exited
		}
		out := logs.String()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("the server reported a data race:\n%s", out)
		} else if t.Failed() {
			t.Logf("server output:\n%s", tail(out, 8000))
		}
	})

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(stepTimeout)
	for {
		select {
		case <-exited:
			t.Fatalf("server exited during startup:\n%s", logs.String())
		default:
		}
		resp, err := client.Get(srv.base + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy after %v (last error %v):\n%s", stepTimeout, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.startTime = time.Since(t0)
	return srv
}

// ---------------------------------------------------------------- the browser

// startBrowser launches headless Chromium with fake camera and microphone
// (granted without a prompt), in a fresh temporary profile that chromedp
// removes, with every process of it, when the context ends.
func startBrowser(t *testing.T, ctx context.Context, chromium string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 800),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithErrorf(quiet(t)))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	return browser
}

type tab struct {
	name       string
	ctx        context.Context
	opened     time.Time
	firstFrame time.Time

	mu      sync.Mutex
	console []string
}

// openTab opens a tab: the browser's first one, or a new one beside it.
func openTab(t *testing.T, browser context.Context, name string, first bool) *tab {
	t.Helper()
	ctx := browser
	if !first {
		var cancel context.CancelFunc
		ctx, cancel = chromedp.NewContext(browser)
		t.Cleanup(cancel)
	}
	p := &tab{name: name, ctx: ctx}
	t0 := time.Now()
	if err := chromedp.Do(ctx); err != nil { // starts the browser or opens the tab
		t.Fatalf("open tab %s in %s: %v", name, chromiumBin, err)
	}
	if first {
		t.Logf("browser started in %v", time.Since(t0).Round(time.Millisecond))
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				p.mu.Lock()
				p.console = append(p.console, m.String())
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.console) > 0 {
			t.Logf("page %s console:\n  %s", name, strings.Join(p.console, "\n  "))
		}
		if s, err := p.stats(); err == nil {
			j, _ := json.MarshalIndent(s, "  ", "  ")
			t.Logf("page %s state:\n  %s", name, j)
		}
	})
	return p
}

// navigate loads url and checks that the server answered the page itself.
func (p *tab) navigate(t *testing.T, url string) {
	t.Helper()
	p.opened = time.Now()
	resp, err := chromedp.Run(p.ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("page %s: open %s: %v", p.name, url, err)
	}
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.MimeType, "text/html") {
		t.Fatalf("page %s: GET %s answered %d %s, not the web client: plain GETs (no WebSocket upgrade) must get the page, also with ?roomId= in the URL",
			p.name, url, resp.Status, resp.MimeType)
	}
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`typeof window.__app === "object"`)); err != nil {
		t.Fatalf("page %s: the client did not start: %v", p.name, err)
	}
}

func (p *tab) stats() (*pageStats, error) {
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[*pageStats](`window.__app ? window.__app.stats() : null`, chromedp.EvalAwaitPromise))
	if err == nil && s == nil {
		err = errors.New("window.__app is missing: the page's script did not run")
	}
	return s, err
}

func (p *tab) mustStats(t *testing.T) *pageStats {
	t.Helper()
	s, err := p.stats()
	if err != nil {
		t.Fatalf("page %s: stats: %v", p.name, err)
	}
	return s
}

// waitFor polls the page's state until cond holds; on timeout it marks the
// test failed with the last state cond described, and returns false. Safe
// from any goroutine.
func (p *tab) waitFor(t *testing.T, timeout time.Duration, what string, cond func(*pageStats) (bool, string)) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := "no state read"
	for {
		s, err := p.stats()
		if err != nil {
			last = err.Error()
		} else {
			var ok bool
			if ok, last = cond(s); ok {
				return true
			}
		}
		if time.Now().After(deadline) || p.ctx.Err() != nil {
			t.Errorf("page %s: %s: not reached after %v; last: %s", p.name, what, timeout, last)
			return false
		}
		time.Sleep(pollInterval)
	}
}

// mustWait is waitFor that stops the test; only from the test's goroutine.
func (p *tab) mustWait(t *testing.T, timeout time.Duration, what string, cond func(*pageStats) (bool, string)) {
	t.Helper()
	if !p.waitFor(t, timeout, what, cond) {
		t.FailNow()
	}
}

// poll reports whether cond held within timeout (no failure).
func (p *tab) poll(timeout time.Duration, cond func(*pageStats) bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s, err := p.stats(); err == nil && cond(s) {
			return true
		}
		time.Sleep(pollInterval)
	}
	return false
}

func (p *tab) screenshot(t *testing.T, path string) {
	t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("page %s: screenshot: %v", p.name, err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
	}
}

func run[T any](t *testing.T, p *tab, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("page %s: %v", p.name, err)
	}
	return v
}

// ---------------------------------------------------------------- page state

// pageStats is what window.__app.stats() returns (web/src/app.js).
type pageStats struct {
	RoomID        string  `json:"roomId"`
	PeerID        string  `json:"peerId"`
	DisplayName   string  `json:"displayName"`
	WS            string  `json:"ws"`
	SendTransport string  `json:"sendTransport"`
	RecvTransport string  `json:"recvTransport"`
	Joined        bool    `json:"joined"`
	ActiveSpeaker *string `json:"activeSpeaker"`
	Peers         []struct {
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
	} `json:"peers"`
	Producers []struct {
		Source string `json:"source"`
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		Paused bool   `json:"paused"`
	} `json:"producers"`
	ChatProducer  string `json:"chatProducer"`
	DataConsumers []struct {
		ID         string `json:"id"`
		PeerID     string `json:"peerId"`
		Label      string `json:"label"`
		ReadyState string `json:"readyState"`
	} `json:"dataConsumers"`
	Consumers []struct {
		ID              string `json:"id"`
		PeerID          string `json:"peerId"`
		Kind            string `json:"kind"`
		Paused          bool   `json:"paused"`
		FramesDecoded   int64  `json:"framesDecoded"`
		PacketsReceived int64  `json:"packetsReceived"`
		BytesReceived   int64  `json:"bytesReceived"`
		Error           string `json:"error,omitempty"`
	} `json:"consumers"`
	Chat []struct {
		From string `json:"from"`
		Name string `json:"name"`
		Text string `json:"text"`
		Self bool   `json:"self"`
	} `json:"chat"`
	Marks  map[string]float64 `json:"marks"`
	Errors []string           `json:"errors"`
}

// objectIDs lists the page's consumer and data consumer ids.
func (s *pageStats) objectIDs() (ids []string) {
	for _, c := range s.Consumers {
		ids = append(ids, c.ID)
	}
	for _, d := range s.DataConsumers {
		ids = append(ids, d.ID)
	}
	return ids
}

// drop forgets the consumers and data consumers whose ids are in old.
func (s *pageStats) drop(old map[string]bool) {
	cs := s.Consumers[:0]
	for _, c := range s.Consumers {
		if !old[c.ID] {
			cs = append(cs, c)
		}
	}
	s.Consumers = cs
	ds := s.DataConsumers[:0]
	for _, d := range s.DataConsumers {
		if !old[d.ID] {
			ds = append(ds, d)
		}
	}
	s.DataConsumers = ds
}

func (s *pageStats) framesFrom(peer string) (n int64) {
	for _, c := range s.Consumers {
		if c.PeerID == peer && c.Kind == "video" {
			n += c.FramesDecoded
		}
	}
	return n
}

func (s *pageStats) audioPacketsFrom(peer string) (n int64) {
	for _, c := range s.Consumers {
		if c.PeerID == peer && c.Kind == "audio" {
			n += c.PacketsReceived
		}
	}
	return n
}

func (s *pageStats) chatOpenFrom(peer string) bool {
	for _, d := range s.DataConsumers {
		if d.PeerID == peer && d.Label == "chat" && d.ReadyState == "open" {
			return true
		}
	}
	return false
}

func (s *pageStats) hasChat(from, text string) bool {
	for _, m := range s.Chat {
		if m.From == from && m.Text == text && !m.Self {
			return true
		}
	}
	return false
}

func (s *pageStats) peerName(id string) string {
	for _, p := range s.Peers {
		if p.ID == id {
			return p.DisplayName
		}
	}
	return ""
}

func (s *pageStats) peerList() string {
	var out []string
	for _, p := range s.Peers {
		out = append(out, p.ID+"="+p.DisplayName)
	}
	return "[" + strings.Join(out, " ") + "]"
}

func (s *pageStats) mark(name string) string {
	v, ok := s.Marks[name]
	if !ok {
		return "–"
	}
	return (time.Duration(v) * time.Millisecond).String()
}

// ---------------------------------------------------------------- helpers

// quiet drops chromedp's complaints about protocol events newer than its
// cdproto (Chromium moves faster than the library); other errors are logged
// while the test runs.
func quiet(t *testing.T) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "unmarshal") || strings.Contains(msg, "unknown") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf("chromedp: %s", msg)
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
