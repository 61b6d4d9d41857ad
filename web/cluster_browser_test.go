package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mediasoup-server/mediasoup-server/internal/testredis"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
)

// Cluster mode in the browser: two server processes on one redis-server,
// page A on node A, page B on node B, same room: the room lives on node A,
// node B relays page B's signaling, page B's media goes straight to node A,
// and each page decodes the other's video.
func TestBrowserTwoNodesOneRoom(t *testing.T) {
	root, dist, chromium, workerBin, serverBin := browserParts(t)
	redis := testredis.Start(t)

	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	t.Cleanup(cancel)
	na := startServer(t, root, dist, serverBin, workerBin, "-redis", redis.URL(), "-node-id", "node-a")
	nb := startServer(t, root, dist, serverBin, workerBin, "-redis", redis.URL(), "-node-id", "node-b")
	for _, n := range []*server{na, nb} {
		testutil.Eventually(t, 30*time.Second, func() bool { return status(n.base+"/readyz") == http.StatusOK }, "%s not ready", n.base)
	}
	// Both nodes registered.
	testutil.Eventually(t, 30*time.Second, func() bool {
		return strings.Count(body(nb.base+"/admin/cluster"), `"id": "node-`) == 2
	}, "the nodes do not see each other")

	browser := startBrowser(t, ctx, chromium)
	a := openTab(t, browser, "A", true)
	b := openTab(t, browser, "B", false)
	a.navigate(t, na.base+"/?displayName=Alice")
	link := run(t, a, chromedp.Evaluate[string](`location.href`))
	a.mustWait(t, mediaTimeout, "page A joined", func(s *pageStats) (bool, string) {
		return s.Joined, fmt.Sprintf("joined=%v", s.Joined)
	})
	b.navigate(t, strings.Replace(link, na.base, nb.base, 1)+"&displayName=Bob")
	sa, sb := a.mustStats(t), b.mustStats(t)
	if sa.RoomID != sb.RoomID {
		t.Fatalf("two rooms: %s, %s", sa.RoomID, sb.RoomID)
	}
	waitMediaBothWays(t, a, b, map[*tab]string{a: sa.PeerID, b: sb.PeerID}, nil, " (page B on the other node)")
	if m := metric(nb.base, `mediasoup_server_relayed_connections{side="edge"}`); m != "1" {
		t.Fatalf("node B relays %q connections, want 1", m)
	}
	if !strings.Contains(body(na.base+"/admin/rooms"), sa.RoomID) || strings.Contains(body(nb.base+"/admin/rooms"), sa.RoomID) {
		t.Fatal("the room is not (only) on node A")
	}
	for _, p := range []*tab{a, b} {
		if s := p.mustStats(t); len(s.Errors) > 0 {
			t.Errorf("page %s reported errors: %q", p.name, s.Errors)
		}
		t.Logf("page %s: open → first decoded remote frame %v", p.name, p.firstFrame.Sub(p.opened).Round(time.Millisecond))
	}
}

func status(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func body(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metric(base, sample string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body(base + "/metrics"))
	if m == nil {
		return ""
	}
	return m[1]
}
