package reliability

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
)

// The client process of TestManyIdlePeers: this test binary, started again
// with clientProcessEnv set. It connects and joins N idle peers (no
// transports, no RTP capabilities: nothing is consumed) in rooms of
// RELIABILITY_ROOM_SIZE, prints "READY n failures first-error" on stdout,
// keeps them connected (answering the server's pings) until its stdin
// closes, then exits without closing them: the kernel drops every socket at
// once, and the server sees a mass disconnect.
//
// Running the clients in their own process keeps their memory, goroutines
// and descriptors out of the server's figures.
const (
	clientProcessEnv = "RELIABILITY_CLIENT_PROCESS"
	clientURLEnv     = "RELIABILITY_CLIENT_URL"
	clientCountEnv   = "RELIABILITY_CLIENT_COUNT"
	clientRoomEnv    = "RELIABILITY_ROOM_SIZE"
)

func clientProcess() int {
	url := os.Getenv(clientURLEnv)
	n, _ := strconv.Atoi(os.Getenv(clientCountEnv))
	roomSize, _ := strconv.Atoi(os.Getenv(clientRoomEnv))
	if url == "" || n <= 0 || roomSize <= 0 {
		fmt.Println("ERROR bad client process environment")
		return 2
	}
	raiseFileLimit()
	var (
		mu       sync.Mutex
		conns    = make([]*client.Conn, 0, n)
		failures atomic.Int64
		firstErr atomic.Value
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := joinIdle(url, fmt.Sprintf("idle%d", i/roomSize), fmt.Sprintf("p%d", i))
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	first, _ := firstErr.Load().(string)
	fmt.Printf("READY %d %d %d %q\n", len(conns), failures.Load(), time.Since(start).Milliseconds(), first)
	// Until the parent closes stdin; the connections must stay up meanwhile.
	in := bufio.NewReader(os.Stdin)
	for {
		if _, err := in.ReadString('\n'); err != nil {
			break
		}
	}
	closed := 0
	for _, c := range conns {
		select {
		case <-c.Done():
			closed++
		default:
		}
	}
	fmt.Printf("CLOSED-BY-SERVER %d\n", closed)
	return 0
}

// joinIdle connects a peer and joins it without media.
func joinIdle(url, roomID, peerID string) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, roomID, peerID, &client.DialOptions{NotificationBacklog: -1})
	if err != nil {
		return nil, err
	}
	if err := c.Request(ctx, "join", client.JoinRequest{DisplayName: peerID, Device: client.Device{Flag: "go", Name: "idle"}}, nil); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}
