package signaling_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediasoup-server/mediasoup-server/client"
	"github.com/mediasoup-server/mediasoup-server/internal/testutil"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"go.uber.org/goleak"
)

// TestNotificationOrderInStampede: during a stampede, every peer receives
// its notifications and server requests in the order the room produced
// them, and none is lost or doubled (issue 15). It runs against the real
// stack: a real worker, the real WebSocket edge, protoo clients on loopback;
// transports and producers use the synthetic DTLS and RTP parameters of the
// other protocol tests (fingerprint, rtpParams; cmd/loadtest's signaling
// mode does the same), which the worker takes without a handshake.
//
// The scenario: a producer peer joins and produces audio and video. Then
// viewers, each with a connected receiving transport and accepting every
// newConsumer, send their join at the same moment, each with a rename of
// itself right behind it (pipelined, client.Conn.Go: the server handles it
// as soon as the join's newPeer fan-out is done, so every other peer's
// queue gets the peerDisplayNameChanged, a broadcast, right behind the
// newPeer, sent peer by peer). While they do, the producer pauses and
// resumes its video producer, the pair back to back, again and again until
// every viewer holds its consumers. Some viewers (without transports)
// close their socket right after joining, half at once, half once the late
// ones are joining; a few rejoin: leaveRoom and a second join and rename
// right behind their first (the others get peerClosed, a broadcast, right
// before the second newPeer); once half the stampede is in, late viewers
// join, a few of them producing audio. Every peer records every message it
// receives, in arrival order (client.DialOptions.OnMessage runs on the
// reading goroutine).
//
// The server keeps no log of what it meant to send, so the test checks what
// order means to a client (mediasoup-client, the demo app), and each check
// breaks when two related messages swap or one goes missing. A peer's
// presence is a session: from its newPeer (or the join answer listing it)
// to its peerClosed; a rejoining peer has two, told apart by display name.
//
//   - mediasoup-version first;
//   - for every other peer X: a session of X opens once (newPeer or the
//     join answer, not both), never while another of X is open, never
//     after a later one; every peerDisplayNameChanged of X (with the name
//     of that session), newConsumer from X and peerClosed(X) within an open
//     session of X;
//   - the newConsumers of producers that existed before a peer joined only
//     after its join answer; every consumerPaused, consumerResumed,
//     consumerClosed, consumerScore and consumerLayersChanged names a
//     consumer whose newConsumer came before, and none follows its
//     consumerClosed;
//   - for each consumer of the toggled video producer, consumerPaused and
//     consumerResumed strictly alternate, starting from the opposite of
//     newConsumer's producerPaused, and end on the producer's final state
//     (resumed): a swapped pair shows as two of a kind in a row;
//   - nothing lost: each remaining peer ends with every other remaining
//     session open; of a session that ended it got nothing or its opening
//     and its peerClosed, and both whenever the test's own timeline says
//     they were in the room together; each rename of a session it was in
//     the room with, once, and in the end it knows every other peer by
//     its last display name (no rename lost, no stale name in a join
//     answer or newPeer); exactly one newConsumer per producer of the
//     others; no consumerClosed (no producer closed).
//
// Three races of the room itself produced messages out of that order (main
// as of this test's first version). The checks still recognise them,
// narrowly, to name them in the log; all three are fixed since and fail
// the test:
//
//   - a join's answer is queued only once its handler returned, after
//     Peer.Join took its snapshot of the room, so messages the room
//     produced for the joiner after that snapshot may overtake the answer:
//     the checks read the answer where its snapshot was taken (inRoomOrder);
//   - Peer.Close takes a leaving peer out of the room in one critical
//     section and picks whom to tell in another, so a peer that joins in
//     between gets a peerClosed of a peer it never heard of (joinLeaveRace);
//   - Peer.consume listens to the consumer's producer pause and resume
//     before it queues newConsumer (reading producerPaused on the way), so
//     a pause or resume in between is queued before the newConsumer
//     (consumeRace).
//
// A rejoining peer's own record is checked up to its leaveRoom answer: the
// room may still queue messages produced for its first session on the same
// connection after that answer.
//
// To know that everything the room produced for a peer has arrived, the
// test waits (generous bounds, no wall-clock assertion) until the server
// has freed every leaving viewer (so their peerClosed went out) and every
// remaining peer holds what it must, then sends a last notification
// through the room (a rename) and checks each record once that last one
// arrived: whatever the room produced for that peer before it is in.
func TestNotificationOrderInStampede(t *testing.T) {
	const (
		initial       = 100 // viewers joining at the same moment
		leavers       = 10  // of them (every tenth), close their socket right after joining
		rejoiners     = 6   // of them, leave and join again right behind their first join
		late          = 20  // viewers joining once half of the initial ones are in
		lateProducers = 4   // of the late ones, produce audio (each one consumed by 100 others)
		// The producer pauses and resumes its video producer (a pair back
		// to back: recorder.toggle), a pair every togglePace, at least
		// minToggles pairs and on until every viewer holds its consumers,
		// with a last pair after that: mediasoup-go (v2.6.0) drops a
		// worker notification that comes before the consumer's Go object
		// listens (channel.processNotification gives up after ten short
		// sleeps), so only a pair that all the video consumers hear for
		// sure sets the state they end in. maxToggles only ends a
		// stampede that never ends. Paced, not as fast as the server
		// answers: on a busy machine under -race, a room that falls 4 s
		// behind fails consumes (room.WorkerRequestTimeout), which is not
		// what this test is about.
		minToggles = 30
		maxToggles = 1000
		togglePace = 20 * time.Millisecond
		roomID     = "stampede"
	)
	checkStampedeLeaks(t)
	e := newEnv(t, 1, func(o *room.Options, l *signaling.Limits) {
		o.MaxPeersPerRoom = 1 + initial + late
		l.RequestRate = -1 // the producer toggles a pair every togglePace: over the default 50/s
	})
	s := &stampede{producedAt: map[string]int64{}, producersOf: map[string][]string{}, sessionsOf: map[string][]*session{}}

	producer, err := dialRecorder(e, roomID, "producer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = producer.c.Close() })
	var audio string
	if err = producer.setup(true, true); err == nil {
		if err = producer.join(&s.clock); err == nil {
			if audio, err = producer.produce(s, "audio"); err == nil {
				s.video, err = producer.produce(s, "video")
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}

	// The viewers, ready to join: connected, with a receiving transport
	// (and the late producers a sending one). The leaving and rejoining
	// ones have none: only the order of their records is checked, and
	// their transports' closes are load this test does without (before
	// the room's per-producer locks, each held up every consume in the
	// room, and on a busy machine under -race twenty of them in a row
	// held consumes past room.WorkerRequestTimeout: lost consumers).
	isLeaver := func(i int) bool { return i < initial && i%(initial/leavers) == 0 }
	isRejoiner := func(i int) bool {
		step := initial / leavers
		return i < initial && i%step == step/2 && i/step < rejoiners
	}
	viewers := make([]*recorder, initial+late)
	{
		var wg sync.WaitGroup
		errs := make(chan error, initial+late)
		for i := range viewers {
			id := fmt.Sprintf("v%03d", i)
			if i >= initial {
				id = fmt.Sprintf("late%02d", i-initial)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := dialRecorder(e, roomID, id)
				if err == nil {
					viewers[i] = v
					err = v.setup(i >= initial && i-initial < lateProducers, !isLeaver(i) && !isRejoiner(i))
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for _, v := range viewers {
			if v != nil {
				t.Cleanup(func() { _ = v.c.Close() })
			}
		}
		for err := range errs {
			t.Fatal(err)
		}
	}

	// The stampede.
	start := make(chan struct{})
	lateJoining := make(chan struct{}) // half of the initial viewers are in: the late ones join
	viewersIn := make(chan struct{})   // every viewer is in (or gone) with its consumers
	abort := make(chan struct{})       // a step failed: everyone stops
	var abortOnce sync.Once
	errs := make(chan error, 1+initial+late)
	fail := func(err error) {
		errs <- err
		abortOnce.Do(func() { close(abort) })
	}
	wait := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-abort:
			return false
		}
	}
	var answered atomic.Int32
	var toggled int
	var producerWG, viewersWG sync.WaitGroup
	producerWG.Add(1)
	go func() {
		defer producerWG.Done()
		if !wait(start) {
			return
		}
		pace := time.NewTicker(togglePace)
		defer pace.Stop()
		for toggled < maxToggles {
			select {
			case <-abort:
				return
			case <-pace.C:
			}
			in := false // every viewer holds its consumers: this pair is the last
			select {
			case <-viewersIn:
				in = true
			default:
			}
			if err := producer.toggle(s.video); err != nil {
				fail(err)
				return
			}
			toggled++
			if in && toggled >= minToggles {
				return
			}
		}
		fail(fmt.Errorf("the stampede not over after %d toggles", maxToggles))
	}()
	for i, v := range viewers {
		viewersWG.Add(1)
		go func() {
			defer viewersWG.Done()
			if !wait(start) || i >= initial && !wait(lateJoining) {
				return
			}
			var err error
			switch {
			case isRejoiner(i):
				err = v.joinAndRejoin(&s.clock)
			case i >= initial && i-initial < lateProducers:
				// The produce too right behind: the others' newConsumer
				// (a server request) follows their newPeer (a
				// notification) by a few worker round trips.
				err = v.joinAndRename(&s.clock, v.produceStep(s, "audio"))
			default:
				err = v.joinAndRename(&s.clock)
			}
			if err != nil {
				fail(err)
				return
			}
			if i < initial && answered.Add(1) == initial/2 {
				close(lateJoining)
			}
			switch {
			case isRejoiner(i):
				return
			case isLeaver(i):
				if (i/(initial/leavers))%2 == 1 && !wait(lateJoining) {
					return
				}
				v.first.closeSent = s.clock.Add(1)
				_ = v.c.Close()
				return
			}
			// In with its consumers of the producer's: the toggling goes
			// on until every viewer is there.
			if err := v.await(abort, func(k knowledge) bool {
				return len(k.byProducer[audio]) > 0 && len(k.byProducer[s.video]) > 0
			}); err != nil {
				fail(fmt.Errorf("%s: no newConsumer of the producer's audio and video: %w", v.id, err))
			}
		}()
	}
	go func() {
		viewersWG.Wait()
		close(viewersIn)
	}()
	close(start)
	viewersWG.Wait()
	producerWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Who stays, who left: the sessions, and how each record is checked.
	var stay []*recorder
	s.remaining = []*session{producer.first}
	producer.watch = watchAll
	for i, v := range viewers {
		switch {
		case isLeaver(i):
			s.left = append(s.left, v.first)
			v.watch = watchOrder
		case isRejoiner(i):
			s.left = append(s.left, v.first)
			s.remaining = append(s.remaining, v.second)
			v.watch = watchFirstSession
		default:
			s.remaining = append(s.remaining, v.first)
			v.watch = watchAll
			stay = append(stay, v)
		}
	}
	for _, x := range append(slices.Clone(s.remaining), s.left...) {
		s.sessionsOf[x.peer] = append(s.sessionsOf[x.peer], x)
	}
	for _, ss := range s.sessionsOf {
		slices.SortFunc(ss, func(a, b *session) int { return int(a.joinSent - b.joinSent) })
	}
	s.lastRenamers = []*recorder{producer, stay[len(stay)-1]}
	all := append([]*recorder{producer}, viewers...)

	// The server freed every leaving viewer: their peerClosed went out.
	var waits []string // what the waits found missing: reported after the breaches
	waits = appendNonEmpty(waits, waitFor("the server still holds the leaving viewers' connections", func() string {
		if n, want := metricValue(t, e.url, "mediasoup_server_websocket_connections"), len(all)-leavers; n != float64(want) {
			return fmt.Sprintf("%v open, want %d", n, want)
		}
		return ""
	}))
	// Every remaining peer got what it must (a lost message ends here,
	// named; the checks below tell what came instead).
	waits = appendNonEmpty(waits, waitFor("a remaining peer still misses messages", func() string {
		for _, v := range all {
			if v.watch == watchAll {
				if m := s.check(v).missing; m != "" {
					return v.id + ": " + m
				}
			}
		}
		return ""
	}))
	// A last message through the room: once it arrived, so did everything
	// the room produced for that peer before it.
	if len(waits) == 0 {
		for _, x := range s.lastRenamers {
			mustRequest(t, x.c, "changeDisplayName", map[string]string{"displayName": lastName}, nil)
		}
		s.lastSent = true
		waits = appendNonEmpty(waits, waitFor("the last rename has not arrived", func() string {
			for _, v := range all {
				if v.watch != watchAll {
					continue
				}
				k := learn(v.snapshot())
				for _, x := range s.lastRenamers {
					if x != v && k.renamed[x.id+" "+lastName] == 0 {
						return fmt.Sprintf("%s's at %s", x.id, v.id)
					}
				}
			}
			return ""
		}))
	}

	var problems, raced, early []string
	overtook, ghosts := 0, 0
	for _, v := range all {
		c := s.check(v)
		problems, raced, early = append(problems, c.problems...), append(raced, c.raced...), append(early, c.early...)
		overtook, ghosts = overtook+c.overtook, ghosts+c.ghosts
	}
	t.Logf("the room's own races (each fails the test): %d messages overtook their peer's join answer (%d of them a peerClosed of a peer the late answer then lists); %d peerClosed of a peer never heard of; %d consumerPaused/Resumed before their newConsumer",
		overtook, ghosts, len(raced), len(early))
	for _, e := range [][]string{raced, early} {
		if len(e) > 0 {
			t.Logf("e.g. %s", e[0])
		}
	}
	// All three are fixed (the join holds what is queued meanwhile behind
	// its answer; a leaving peer's peerClosed goes to the peers joined as it
	// leaves; a consumer's listeners wait for its newConsumer to be queued):
	// they fail.
	if overtook > 0 {
		problems = append(problems, fmt.Sprintf("%d messages overtook their peer's join answer", overtook))
	}
	if len(raced) > 0 {
		problems = append(problems, fmt.Sprintf("%d peerClosed of a peer never heard of, e.g. %s", len(raced), raced[0]))
	}
	if len(early) > 0 {
		problems = append(problems, fmt.Sprintf("%d consumerPaused/Resumed before their newConsumer, e.g. %s", len(early), early[0]))
	}
	problems = append(problems, waits...)
	if len(problems) > 0 {
		// The record of the first peer named, to read the breach in its
		// context.
	dump:
		for _, p := range problems {
			for _, v := range all {
				if strings.HasPrefix(p, v.id+": ") || strings.Contains(p, ": "+v.id+": ") {
					t.Logf("what %s received, in arrival order:\n%s", v.id, v.dump())
					break dump
				}
			}
		}
		const show = 40
		if len(problems) > show {
			problems = append(problems[:show], fmt.Sprintf("… and %d more", len(problems)-show))
		}
		t.Fatalf("%d viewers (%d left, %d rejoined, %d late), %d toggles: notifications out of order, lost or doubled:\n%s",
			initial+late, leavers, rejoiners, late, toggled, strings.Join(problems, "\n"))
	}

	// How much the fan-outs overlapped: the video consumers announced
	// paused, and those that heard a pause or resume.
	events, videoConsumers, bornPaused, toggledConsumers := 0, 0, 0, 0
	for _, v := range all {
		evs := v.snapshot()
		events += len(evs)
		heard := map[string]bool{}
		for _, ev := range evs {
			switch {
			case ev.method == "newConsumer" && ev.prod == s.video:
				heard[ev.id] = false
				videoConsumers++
				if ev.paused {
					bornPaused++
				}
			case ev.method == "consumerPaused" || ev.method == "consumerResumed":
				if h, ok := heard[ev.id]; ok && !h {
					heard[ev.id] = true
					toggledConsumers++
				}
			}
		}
	}
	t.Logf("%d peers received %d messages in order; %d toggles; of %d video consumers %d were announced paused, %d heard a pause or resume",
		len(all), events, toggled, videoConsumers, bornPaused, toggledConsumers)
}

// lastName is the display name of the last rename, after which a record
// is complete.
const lastName = "last"

// stampede is what the test did, against which each record is checked.
type stampede struct {
	clock     atomic.Int64 // orders the test's own steps across goroutines
	remaining []*session   // the sessions in the room at the end, the producer's first
	left      []*session   // the sessions that ended
	// sessionsOf: a peer id's sessions, in order.
	sessionsOf map[string][]*session
	// lastRenamers rename themselves lastName at the end, once lastSent.
	lastRenamers []*recorder
	lastSent     bool
	video        string              // the toggled producer (ends resumed)
	producersOf  map[string][]string // peer → its producers
	producedAt   map[string]int64    // producer → clock when its produce was answered
	mu           sync.Mutex          // producersOf, producedAt during the stampede
}

// session is one presence of a peer in the room, from its join to its
// leaving (closeSent 0: it stays), with the test's timeline
// (stampede.clock) of its steps.
type session struct {
	peer                                          string // peer id
	name                                          string // its display name at join; its rename is name + "'"
	joinSent, joinAnswered, renameSent, closeSent int64
}

// nameNow is session x's display name now: its name, its rename (name') once
// it renamed itself, lastName once it was renamed last.
func (s *stampede) nameNow(x *session) string {
	if s.lastSent && slices.ContainsFunc(s.lastRenamers, func(r *recorder) bool { return r.first == x }) {
		return lastName
	}
	if x.renameSent != 0 {
		return x.name + "'"
	}
	return x.name
}

// key tells the sessions of one peer apart: the peer id and "#2" for a
// second session (whose display names are id#2 and id#2').
func (x *session) key() string { return sessionKey(x.peer, x.name) }

func sessionKey(peer, name string) string {
	if strings.Contains(name, "#2") {
		return peer + "#2"
	}
	return peer
}

// watch tells how much of a record is checked.
type watch int

const (
	watchAll          watch = iota // order, and nothing lost (a peer in the room to the end)
	watchOrder                     // order only (a peer that left)
	watchFirstSession              // order, up to the leaveRoom answer (a rejoining peer)
)

// recorder is a peer that records, in arrival order, every message the
// server sends it.
type recorder struct {
	id   string
	c    *client.Conn
	caps json.RawMessage
	send client.TransportInfo
	recv client.TransportInfo

	first, second *session // its sessions; second only for a rejoining peer
	watch         watch

	mu     sync.Mutex
	events []event
}

// event is one received message, decoded as far as the checks need.
type event struct {
	kind   client.MessageKind
	method string
	peer   string   // newPeer's id; the others' peerId
	id     string   // consumerId; newConsumer's id
	prod   string   // newConsumer's producerId
	paused bool     // newConsumer's producerPaused
	name   string   // displayName
	peers  []string // the join answer's, as session keys
	names  []string // and their display names
}

func (ev event) String() string {
	switch {
	case ev.kind == client.KindResponse:
		if ev.peers != nil {
			return fmt.Sprintf("the %s answer %v", ev.method, ev.peers)
		}
		return "the " + ev.method + " answer"
	case ev.method == "newConsumer":
		return fmt.Sprintf("newConsumer(peer %s, producer %s, consumer %s, producerPaused %v)", ev.peer, ev.prod, ev.id, ev.paused)
	case ev.id != "":
		return fmt.Sprintf("%s(consumer %s)", ev.method, ev.id)
	case ev.method == "peerDisplayNameChanged" || ev.method == "newPeer":
		return fmt.Sprintf("%s(%s, %q)", ev.method, ev.peer, ev.name)
	case ev.peer != "":
		return fmt.Sprintf("%s(%s)", ev.method, ev.peer)
	}
	return ev.method
}

func dialRecorder(e *env, roomID, peerID string) (*recorder, error) {
	r := &recorder{id: peerID, first: &session{peer: peerID, name: peerID}}
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	c, err := client.Dial(ctx, e.url, roomID, peerID, &client.DialOptions{
		RequestTimeout:      settle,
		HandshakeTimeout:    settle,
		NotificationBacklog: -1,
		OnMessage:           r.record,
		// OnRequest nil: every newConsumer is accepted.
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", peerID, err)
	}
	r.c = c
	return r, nil
}

func (r *recorder) record(m client.Message) {
	ev := event{kind: m.Kind, method: m.Method}
	var d struct {
		ID             string            `json:"id"`
		PeerID         *string           `json:"peerId"` // null in activeSpeaker
		ConsumerID     string            `json:"consumerId"`
		ProducerID     string            `json:"producerId"`
		ProducerPaused bool              `json:"producerPaused"`
		DisplayName    string            `json:"displayName"`
		Peers          []client.PeerInfo `json:"peers"`
	}
	_ = json.Unmarshal(m.Data, &d)
	if d.PeerID != nil {
		ev.peer = *d.PeerID
	}
	switch {
	case m.Kind == client.KindResponse:
		if m.Method == "join" && m.OK {
			ev.peers = []string{}
			for _, p := range d.Peers {
				ev.peers = append(ev.peers, sessionKey(p.ID, p.DisplayName))
				ev.names = append(ev.names, p.DisplayName)
			}
		}
	case m.Method == "newPeer":
		ev.peer, ev.name = d.ID, d.DisplayName
	case m.Method == "newConsumer":
		ev.id, ev.prod, ev.paused = d.ID, d.ProducerID, d.ProducerPaused
	default:
		ev.id, ev.name = d.ConsumerID, d.DisplayName
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// dump lists the record, one message a line (at most 400).
func (r *recorder) dump() string {
	var b strings.Builder
	for i, ev := range r.snapshot() {
		if i == 400 {
			b.WriteString("  …\n")
			break
		}
		fmt.Fprintf(&b, "  #%d %s\n", i, ev)
	}
	return b.String()
}

// await polls r's record until cond holds, abort is closed or settle passed.
func (r *recorder) await(abort chan struct{}, cond func(knowledge) bool) error {
	deadline := time.Now().Add(settle)
	for !cond(learn(r.snapshot())) {
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %v", settle)
		}
		select {
		case <-abort:
			return errors.New("aborted")
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// setup: capabilities, then a sending and/or a receiving transport, connected.
func (r *recorder) setup(sending, receiving bool) error {
	if err := request(r.c, "getRouterRtpCapabilities", nil, &r.caps); err != nil {
		return err
	}
	for _, tr := range []struct {
		want bool
		into *client.TransportInfo
		req  client.CreateWebRtcTransportRequest
	}{
		{sending, &r.send, client.CreateWebRtcTransportRequest{Producing: true}},
		{receiving, &r.recv, client.CreateWebRtcTransportRequest{Consuming: true}},
	} {
		if !tr.want {
			continue
		}
		if err := request(r.c, "createWebRtcTransport", tr.req, tr.into); err != nil {
			return err
		}
		if err := request(r.c, "connectWebRtcTransport", map[string]any{"transportId": tr.into.ID, "dtlsParameters": fingerprint}, nil); err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) joinRequest(name string) client.JoinRequest {
	return client.JoinRequest{DisplayName: name, Device: client.Device{Flag: "go", Name: "order test"}, RtpCapabilities: r.caps}
}

// join joins, noting on clock when it asked and when it was answered.
func (r *recorder) join(clock *atomic.Int64) error {
	r.first.joinSent = clock.Add(1)
	err := request(r.c, "join", r.joinRequest(r.first.name), nil)
	r.first.joinAnswered = clock.Add(1)
	if err != nil {
		return fmt.Errorf("%s join: %w", r.id, err)
	}
	return nil
}

// step is one request of a pipeline (pipeline).
type step struct {
	method string
	data   any
	sent   *int64 // set to the clock when sent
	done   *int64 // set to the clock when answered
	out    any    // the answer's data, decoded
	then   func() // once answered, ok
}

// pipeline sends the steps' requests back to back, without waiting for
// their answers (client.Conn.Go), then waits for them in order: the server
// handles them one after the other, each follow-up (a join's newPeer
// fan-out) before the next. clock may be nil when no step notes a time.
func (r *recorder) pipeline(clock *atomic.Int64, steps ...step) error {
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	var calls []*client.Call
	var err error
	for _, st := range steps {
		if st.sent != nil {
			*st.sent = clock.Add(1)
		}
		var call *client.Call
		if call, err = r.c.Go(ctx, st.method, st.data); err != nil {
			err = fmt.Errorf("%s %s: %w", r.id, st.method, err)
			break
		}
		calls = append(calls, call)
	}
	for i, call := range calls {
		werr := call.Wait(steps[i].out)
		if steps[i].done != nil {
			*steps[i].done = clock.Add(1)
		}
		if werr != nil && err == nil {
			err = fmt.Errorf("%s %s: %w", r.id, steps[i].method, werr)
		}
		if werr == nil && steps[i].then != nil {
			steps[i].then()
		}
	}
	return err
}

func rename(name string) map[string]string { return map[string]string{"displayName": name + "'"} }

// joinAndRename joins and renames itself (name') right behind the join, so
// every other peer gets peerDisplayNameChanged right behind newPeer; then
// the more steps, as right behind.
func (r *recorder) joinAndRename(clock *atomic.Int64, more ...step) error {
	x := r.first
	return r.pipeline(clock, append([]step{
		{method: "join", data: r.joinRequest(x.name), sent: &x.joinSent, done: &x.joinAnswered},
		{method: "changeDisplayName", data: rename(x.name), sent: &x.renameSent},
	}, more...)...)
}

// joinAndRejoin is joinAndRename, then leaveRoom, a second join (as
// id#2) and its rename, all back to back: every other peer gets the
// first session's peerClosed right before the second's newPeer.
func (r *recorder) joinAndRejoin(clock *atomic.Int64) error {
	x, y := r.first, &session{peer: r.id, name: r.id + "#2"}
	r.second = y
	return r.pipeline(clock,
		step{method: "join", data: r.joinRequest(x.name), sent: &x.joinSent, done: &x.joinAnswered},
		step{method: "changeDisplayName", data: rename(x.name), sent: &x.renameSent},
		step{method: "leaveRoom", sent: &x.closeSent},
		step{method: "join", data: r.joinRequest(y.name), sent: &y.joinSent, done: &y.joinAnswered},
		step{method: "changeDisplayName", data: rename(y.name), sent: &y.renameSent})
}

// toggle pauses and resumes a producer, the resume right behind the pause:
// the worker tells every consumer of it producerpause then producerresume
// at once, and each consumer's pair of notifications is queued back to back.
func (r *recorder) toggle(producerID string) error {
	id := map[string]string{"producerId": producerID}
	return r.pipeline(nil, step{method: "pauseProducer", data: id}, step{method: "resumeProducer", data: id})
}

// produce produces on r's sending transport and notes the producer in s.
func (r *recorder) produce(s *stampede, kind string) (string, error) {
	st := r.produceStep(s, kind)
	err := r.pipeline(&s.clock, st)
	return st.out.(*client.IDResponse).ID, err
}

// produceStep is a produce on r's sending transport, which notes the
// producer in s once answered.
func (r *recorder) produceStep(s *stampede, kind string) step {
	var res client.IDResponse
	return step{
		method: "produce",
		data:   client.ProduceRequest{TransportID: r.send.ID, Kind: kind, RtpParameters: rtpParams(kind)},
		out:    &res,
		then: func() {
			at := s.clock.Add(1)
			s.mu.Lock()
			s.producersOf[r.id] = append(s.producersOf[r.id], res.ID)
			s.producedAt[res.ID] = at
			s.mu.Unlock()
		},
	}
}

// knowledge is what a record holds, whatever its order: the newConsumers
// per producer, the renames ("peer name" → count).
type knowledge struct {
	byProducer map[string][]event
	renamed    map[string]int
}

func learn(events []event) knowledge {
	k := knowledge{byProducer: map[string][]event{}, renamed: map[string]int{}}
	for _, ev := range events {
		switch ev.method {
		case "peerDisplayNameChanged":
			k.renamed[ev.peer+" "+ev.name]++
		case "newConsumer":
			k.byProducer[ev.prod] = append(k.byProducer[ev.prod], ev)
		}
	}
	return k
}

// mustMeet: by the test's own timeline, r was in the room when session x
// began, or x (which ended) was in the room while r joined: r must hear of
// x.
func mustMeet(r, x *session) bool {
	rIn := r.joinAnswered < x.joinSent
	xIn := x.joinAnswered < r.joinSent && (x.closeSent == 0 || r.joinAnswered < x.closeSent)
	return rIn || xIn
}

// mustHearRename: r was in the room when session x renamed itself.
func mustHearRename(r, x *session) bool {
	return x.renameSent != 0 && r.joinAnswered < x.renameSent
}

// inRoomOrder returns a record in the order the room produced it: the join
// answer moved back to just after the answer before it. Every message about
// the others that came between was produced after Peer.Join took the
// snapshot the answer lists (a peer hears of the others only once it is
// marked joined, in the same critical section), but the answer is queued
// only when the join handler returns, so those messages may overtake it
// (overtook; ghosts: the peerClosed of a peer the answer then lists, which
// a mediasoup-demo client would show for good). pos maps each index of the
// result to the arrival index, for the messages.
func inRoomOrder(events []event) (ordered []event, pos []int, joinAt, overtook, ghosts int) {
	joinAt = slices.IndexFunc(events, func(ev event) bool { return ev.kind == client.KindResponse && ev.peers != nil })
	pos = make([]int, len(events))
	for i := range pos {
		pos[i] = i
	}
	if joinAt < 0 {
		return events, pos, -1, 0, 0
	}
	to := joinAt
	for to > 0 && events[to-1].kind != client.KindResponse && events[to-1].method != "mediasoup-version" {
		to--
	}
	for _, ev := range events[to:joinAt] {
		overtook++
		if ev.method == "peerClosed" && slices.Contains(events[joinAt].peers, ev.peer) {
			ghosts++
		}
	}
	ordered = slices.Insert(slices.Delete(slices.Clone(events), joinAt, joinAt+1), to, events[joinAt])
	pos = slices.Insert(slices.Delete(pos, joinAt, joinAt+1), to, joinAt)
	return ordered, pos, joinAt, overtook, ghosts
}

// verdict is what check found in one record.
type verdict struct {
	problems []string // breaches of order, losses, doubles
	missing  string   // the first thing a remaining peer has yet to get ("" when none)
	raced    []string // peerClosed of a peer never heard of (joinLeaveRace)
	early    []string // consumerPaused/Resumed before their newConsumer (consumeRace)
	overtook int      // messages that overtook the join answer (inRoomOrder)
	ghosts   int
}

// check reads r's record in the room's order (inRoomOrder) and reports
// every breach of order, loss or double, naming r, the message and its
// arrival index; and what r has yet to get.
func (s *stampede) check(r *recorder) verdict {
	raw := r.snapshot()
	if r.watch == watchFirstSession {
		if i := slices.IndexFunc(raw, func(ev event) bool { return ev.kind == client.KindResponse && ev.method == "leaveRoom" }); i >= 0 {
			raw = raw[:i+1]
		}
	}
	me := r.first
	events, pos, joinAt, overtook, ghosts := inRoomOrder(raw)
	v := verdict{overtook: overtook, ghosts: ghosts}
	bad := func(i int, format string, args ...any) {
		v.problems = append(v.problems, fmt.Sprintf("%s: message #%d %s: %s", r.id, pos[i], events[i], fmt.Sprintf(format, args...)))
	}
	if len(raw) == 0 || raw[0].method != "mediasoup-version" {
		v.problems = append(v.problems, fmt.Sprintf("%s: mediasoup-version is not the first message", r.id))
	}
	// The newConsumers of producers older than r's join come from r's own
	// join, after its answer, as they arrive.
	for i, ev := range raw[:max(joinAt, 0)] {
		if at, ok := s.producedAt[ev.prod]; ok && ev.method == "newConsumer" && at < me.joinSent {
			v.problems = append(v.problems, fmt.Sprintf("%s: message #%d %s: before the join answer (#%d), its producer older than the join",
				r.id, i, ev, joinAt))
		}
	}

	// The sessions of the others: opened (where), closed (where).
	opened := map[string]int{}
	closed := map[string]int{}
	open := map[string]string{} // peer id → the key of its open session
	openSession := func(i int, key, how string) {
		peer, _, _ := strings.Cut(key, "#")
		if peer == r.id {
			bad(i, "announces itself")
			return
		}
		if at, ok := opened[key]; ok {
			bad(i, "%s: %s already announced (#%d)", how, key, pos[at])
			return
		}
		if o, ok := open[peer]; ok {
			bad(i, "%s: %s while %s is still in the room (no peerClosed(%s) yet)", how, key, o, peer)
		}
		ss := s.sessionsOf[peer]
		for _, x := range ss[slices.IndexFunc(ss, func(x *session) bool { return x.key() == key })+1:] {
			if at, ok := opened[x.key()]; ok {
				bad(i, "%s: %s after the later %s (#%d)", how, key, x.key(), pos[at])
			}
		}
		opened[key] = i
		open[peer] = key
	}
	// about checks that a message about a peer comes within an open session
	// (of key, when the message tells which).
	about := func(i int, peer, key, what string) {
		if peer == r.id {
			return
		}
		o, ok := open[peer]
		if key == "" {
			key = o
			for _, x := range s.sessionsOf[peer] {
				if _, gone := closed[x.key()]; gone && !ok {
					key = x.key() // the last one that ended
				}
			}
		}
		switch at, gone := closed[key]; {
		case key != "" && gone:
			bad(i, "%s of %s after its peerClosed (#%d)", what, key, pos[at])
		case !ok:
			bad(i, "%s of %s before newPeer(%s)", what, peer, cmp.Or(key, peer))
		case o != key:
			bad(i, "%s of %s while %s is the one in the room", what, key, o)
		}
	}

	type consumer struct {
		at, closedAt int
		peer, prod   string
		born, paused bool // producerPaused in newConsumer; as last heard
	}
	consumers := map[string]*consumer{}
	earlyPaused := map[string]bool{} // consumer → the state its early events left (consumeRace)
	renames := map[string]int{}      // "key name" → count
	nameOf := map[string]string{}    // session key → the display name it last learned
	for i, ev := range events {
		if ev.method == "mediasoup-version" {
			continue
		}
		switch {
		case ev.kind == client.KindResponse:
			for j, key := range ev.peers {
				openSession(i, key, "the join answer lists it")
				nameOf[key] = ev.names[j]
			}
		case ev.method == "newPeer":
			openSession(i, sessionKey(ev.peer, ev.name), "newPeer")
			nameOf[sessionKey(ev.peer, ev.name)] = ev.name
		case ev.method == "peerClosed":
			key, ok := open[ev.peer]
			if ok {
				delete(open, ev.peer)
				closed[key] = i
				break
			}
			// No session of it open: the next one not closed yet.
			for _, x := range s.sessionsOf[ev.peer] {
				if _, ok := closed[x.key()]; !ok {
					key = x.key()
					break
				}
			}
			switch {
			case key == "":
				bad(i, "peerClosed(%s) once more (or of a peer that never joined)", ev.peer)
			case s.joinLeaveRace(me, raw, key):
				v.raced = append(v.raced, fmt.Sprintf("%s: message #%d %s of %s, never heard of", r.id, pos[i], ev, key))
				closed[key] = i
			default:
				bad(i, "before newPeer(%s)", key)
				closed[key] = i
			}
		case ev.method == "peerDisplayNameChanged":
			about(i, ev.peer, sessionKey(ev.peer, ev.name), "peerDisplayNameChanged")
			key := sessionKey(ev.peer, ev.name)
			renames[key+" "+ev.name]++
			nameOf[key] = ev.name
			if ev.name != key+"'" && ev.name != lastName {
				bad(i, "a rename the test never made")
			}
		case ev.method == "activeSpeaker" && ev.peer != "":
			about(i, ev.peer, "", "activeSpeaker")
		case ev.method == "newConsumer":
			about(i, ev.peer, "", "newConsumer")
			if c, ok := consumers[ev.id]; ok {
				bad(i, "consumer %s announced twice (#%d)", ev.id, pos[c.at])
			}
			c := &consumer{at: i, closedAt: -1, peer: ev.peer, prod: ev.prod, born: ev.paused, paused: ev.paused}
			if paused, ok := earlyPaused[ev.id]; ok {
				c.paused = paused
			}
			consumers[ev.id] = c
		case ev.method == "consumerPaused", ev.method == "consumerResumed", ev.method == "consumerClosed",
			ev.method == "consumerScore", ev.method == "consumerLayersChanged":
			c, ok := consumers[ev.id]
			if !ok {
				if (ev.method == "consumerPaused" || ev.method == "consumerResumed") && consumeRace(events, i) {
					v.early = append(v.early, fmt.Sprintf("%s: message #%d %s before its newConsumer", r.id, pos[i], ev))
					earlyPaused[ev.id] = ev.method == "consumerPaused"
				} else {
					bad(i, "%s of a consumer whose newConsumer has not come", ev.method)
				}
				continue
			}
			if c.closedAt >= 0 {
				bad(i, "after consumerClosed (#%d)", pos[c.closedAt])
				continue
			}
			switch ev.method {
			case "consumerClosed":
				c.closedAt = i
			case "consumerPaused", "consumerResumed":
				paused := ev.method == "consumerPaused"
				if paused == c.paused {
					bad(i, "while the consumer is %s already (newConsumer #%d said producerPaused %v): two of a kind in a row",
						map[bool]string{true: "paused", false: "resumed"}[paused], pos[c.at], c.born)
				}
				c.paused = paused
			}
		case ev.method == "newDataConsumer", ev.method == "dataConsumerClosed":
			bad(i, "no data producer in this room")
		}
	}
	if r.watch != watchAll {
		return v // left: only the order counts
	}

	// Nothing lost, nothing doubled (the walk reported the doubles). The
	// first thing still to come is missing; once the record is complete,
	// all of them are problems.
	lost := func(format string, args ...any) {
		m := fmt.Sprintf(format, args...)
		if v.missing == "" {
			v.missing = m
		}
		v.problems = append(v.problems, r.id+": "+m)
	}
	k := learn(raw)
	for _, x := range s.remaining {
		if x.peer == r.id {
			continue
		}
		if open[x.peer] != x.key() {
			lost("%s not in the room as far as it knows (lost newPeer, or a peerClosed it should not have got)", x.key())
		} else if want := s.nameNow(x); nameOf[x.key()] != want {
			lost("knows %s as %q, not %q (a rename lost, or a stale name in a join answer or newPeer)", x.key(), nameOf[x.key()], want)
		}
		for _, pid := range s.producersOf[x.peer] {
			if len(k.byProducer[pid]) == 0 {
				lost("no newConsumer of %s's producer %s", x.peer, pid)
			}
		}
	}
	for _, x := range s.left {
		_, heard := opened[x.key()]
		_, gone := closed[x.key()]
		switch {
		case heard && !gone:
			lost("heard of %s but not that it left (lost peerClosed)", x.key())
		case !heard && mustMeet(me, x):
			lost("never heard of %s, which was in the room with it (lost newPeer)", x.key())
		}
	}
	for _, x := range append(slices.Clone(s.remaining), s.left...) {
		if x.peer == r.id {
			continue
		}
		if n := renames[x.key()+" "+x.name+"'"]; n > 1 || n == 0 && mustHearRename(me, x) {
			lost("%d peerDisplayNameChanged(%s, %q), want 1", n, x.peer, x.name+"'")
		}
	}
	for _, x := range s.lastRenamers {
		if n := k.renamed[x.id+" "+lastName]; x != r && n > 1 {
			lost("%d peerDisplayNameChanged(%s, %q), want 1", n, x.id, lastName)
		}
	}
	owners := map[string]string{} // producer → owner, of the others
	for owner, ps := range s.producersOf {
		for _, p := range ps {
			if owner != r.id {
				owners[p] = owner
			}
		}
	}
	consumed := map[string]int{}
	for id, c := range consumers {
		consumed[c.prod]++
		if owner, ok := owners[c.prod]; !ok || owner != c.peer {
			lost("message #%d newConsumer %s of producer %s of %s: not a producer it should consume", pos[c.at], id, c.prod, c.peer)
		}
		if c.closedAt >= 0 {
			lost("message #%d consumerClosed of %s, whose producer never closed", pos[c.closedAt], id)
		}
		if c.prod == s.video && c.paused {
			lost("the video consumer %s ends paused; its producer ends resumed", id)
		}
	}
	for p, owner := range owners {
		if consumed[p] > 1 {
			lost("%d newConsumer of %s's producer %s, want 1", consumed[p], owner, p)
		}
	}
	return v
}

// joinLeaveRace tells whether a peerClosed that reached r (session me) for
// session key of another peer, never heard of, is the room's join/leave race
// rather than a send path that lost or reordered a message: that session
// ended, it started leaving before r's join was answered, and r never got
// its newPeer nor found it in its join answer. Peer.Close takes a peer out
// of the room under the room's lock but picks whom to tell in a second
// critical section (Room.broadcast), so a peer that joins in between gets
// peerClosed of a peer that was never in its answer.
func (s *stampede) joinLeaveRace(me *session, raw []event, key string) bool {
	i := slices.IndexFunc(s.left, func(x *session) bool { return x.key() == key })
	if i < 0 || s.left[i].closeSent == 0 || s.left[i].closeSent > me.joinAnswered {
		return false
	}
	return !slices.ContainsFunc(raw, func(ev event) bool {
		return ev.method == "newPeer" && sessionKey(ev.peer, ev.name) == key || slices.Contains(ev.peers, key)
	})
}

// consumeRace tells whether events[i], a consumerPaused or consumerResumed
// of a consumer not announced yet, is the room's consume race: its
// newConsumer comes later. Peer.consume listens to the consumer's producer
// pause and resume, reads producerPaused into newConsumer's data, then
// queues newConsumer; a pause or resume in between is queued first (and
// when it came after the read, newConsumer's producerPaused is stale: the
// state the early events leave is the consumer's, as check reads it). On a
// busy machine the consume goroutine may sit in between for a while, so
// the early events need not come right before their newConsumer. Fixed
// since: the listeners wait until newConsumer is queued (room/peer.go,
// consume's gate), and an early event fails the test.
func consumeRace(events []event, i int) bool {
	return slices.ContainsFunc(events[i+1:], func(ev event) bool {
		return ev.method == "newConsumer" && ev.id == events[i].id
	})
}

// waitFor polls cond until it returns "" (at most settle), and returns ""
// or, past settle, what and what cond last said.
func waitFor(what string, cond func() string) string {
	deadline := time.Now().Add(settle)
	for {
		m := cond()
		if m == "" {
			return ""
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("after %v, %s: %s", settle, what, m)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendNonEmpty(list []string, s string) []string {
	if s != "" {
		list = append(list, s)
	}
	return list
}

// checkStampedeLeaks fails the test if, once its cleanups (clients, server,
// workers) ran, goroutines it started still run or a worker process is left.
// Call it first, so that its cleanup runs last.
func checkStampedeLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		testutil.NoLeakedGoroutines(t, append(testutil.WorkerStartLeaks(), before)...)
		if kids := testutil.WorkerChildren(); len(kids) > 0 {
			t.Errorf("mediasoup-worker processes left behind: %v", kids)
		}
	})
}
