package signaling

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A client still writing a frame far over the limit gets the close code
// 1009, not a reset: the server reads and discards what the client sends
// after the close frame (a lingering close), so that closing the socket with
// unread bytes in it does not send an RST that makes the client's kernel
// drop the close frame before the client reads it.
func TestOversizedFrameWhileWritingGetsCloseCode(t *testing.T) {
	checkLeaks(t)
	h := newHarness(t, testLimits()) // 1 MiB frames
	big := []byte(`{"request":true,"id":1,"method":"m","data":{"pad":"` + strings.Repeat("x", 8<<20) + `"}}`)
	const conns = 8
	for i := range conns {
		c, a := h.connect()
		werr := make(chan error, 1)
		go func() {
			c.wmu.Lock()
			defer c.wmu.Unlock()
			_ = c.ws.SetWriteDeadline(time.Now().Add(waitFor))
			werr <- c.ws.WriteMessage(websocket.TextMessage, big)
		}()
		err := c.readClose()
		if code := closeCode(err); code != websocket.CloseMessageTooBig {
			t.Fatalf("connection %d: closed with %v, want 1009", i, err)
		}
		// The server went on reading instead of resetting the connection
		// under the client's write (which stops once the client answered
		// the close frame).
		if err := <-werr; err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			t.Fatalf("connection %d: the client's write of the oversized frame failed: %v (the server reset the connection)", i, err)
		}
		c.ws.Close()
		waitClosed(t, a)
	}
}

// The server closes with a code (Conn.Close: 4000, 4500, 4501 …) while the
// client is in the middle of a large frame: the client still reads the code.
func TestCloseCodeWhileClientWrites(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.MaxFrameBytes = 16 << 20
	h := newHarness(t, l)
	big := []byte(`{"notification":true,"method":"n","data":{"pad":"` + strings.Repeat("x", 8<<20) + `"}}`)
	for i := range 4 {
		c, a := h.connect()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.wmu.Lock()
			defer c.wmu.Unlock()
			_ = c.ws.SetWriteDeadline(time.Now().Add(waitFor))
			for range 4 {
				if c.ws.WriteMessage(websocket.TextMessage, big) != nil {
					return
				}
			}
		}()
		a.conn.Close(4500, "worker died")
		if code := closeCode(c.readClose()); code != 4500 {
			t.Fatalf("connection %d: closed with %d, want 4500", i, code)
		}
		wg.Wait()
		c.ws.Close()
		waitClosed(t, a)
	}
}

// A slow consumer that overflows its send queue, then reads again, gets
// 1008 after the frames that were already on their way.
func TestSlowConsumerGetsCloseCode(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.SendQueueBytes = 128 << 10
	h := newHarness(t, l)
	c, a := h.connect() // the client does not read until the queue overflowed
	payload := map[string]string{"pad": strings.Repeat("x", 64<<10)}
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = a.conn.Notify("big", payload)
	}
	if err == nil {
		t.Fatal("the send queue never overflowed")
	}
	if code := closeCode(c.readClose()); code != websocket.ClosePolicyViolation {
		t.Fatalf("slow consumer closed with %d, want 1008", code)
	}
	c.ws.Close()
	waitClosed(t, a)
}

// A client that writes one message so slowly that the keep-alive gives up
// (it sends no pong meanwhile: it does not read) still reads the close code
// 1001 when it is done writing: the server drops what it sends after the
// close frame instead of resetting the connection.
func TestKeepAliveCloseWhileClientWrites(t *testing.T) {
	checkLeaks(t)
	l := testLimits()
	l.PingInterval = 200 * time.Millisecond
	l.PongTimeout = time.Second
	h := newHarness(t, l)
	c, a := h.connect()
	c.wmu.Lock()
	w, err := c.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 8<<10)) // one frame each (the client's write buffer)
	var werr error
	for i := 0; i < 25 && werr == nil; i++ { // 2.5 s: past the 1 s keep-alive
		_, werr = w.Write(chunk)
		time.Sleep(100 * time.Millisecond)
	}
	c.wmu.Unlock()
	if werr != nil && !errors.Is(werr, websocket.ErrCloseSent) {
		t.Fatalf("the client's slow write failed: %v (the server reset the connection)", werr)
	}
	if code := closeCode(c.readClose()); code != websocket.CloseGoingAway {
		t.Fatalf("closed with %d, want 1001", code)
	}
	c.ws.Close()
	waitClosed(t, a)
}
