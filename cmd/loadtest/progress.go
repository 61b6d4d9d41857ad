package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress bar on a terminal (redrawn in place
// every 200 ms), or prints a plain line every 2 s when the output is not a
// terminal. status is called to get the current fraction and text.
type progress struct {
	w      io.Writer
	tty    bool
	status func() (frac float64, text string)

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func startProgress(w io.Writer, status func() (float64, string)) *progress {
	p := &progress{w: w, tty: isTerminal(w), status: status, stop: make(chan struct{}), done: make(chan struct{})}
	if w == nil {
		close(p.done)
		return p
	}
	every := 2 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw(true)
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
	return p
}

func (p *progress) draw(final bool) {
	frac, text := p.status()
	frac = min(max(frac, 0), 1)
	const width = 30
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	line := fmt.Sprintf("[%s] %3.0f%% %s", bar, frac*100, text)
	if p.tty {
		// \r and clear to the end of the line: the text may shrink.
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

// end draws the last state and stops. Idempotent.
func (p *progress) end() {
	p.once.Do(func() {
		if p.w != nil {
			close(p.stop)
		}
	})
	<-p.done
}
