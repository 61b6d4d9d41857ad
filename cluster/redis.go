package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisOptions configure a node of a cluster on Redis. Zero durations take
// their defaults.
type RedisOptions struct {
	URL    string // redis://[:password@]host:port/db or rediss://
	NodeID string
	// Stats reports this node's load and the rooms it holds (required).
	Stats Stats
	// Draining reports whether the node drains: it claims no new rooms.
	Draining func() bool
	// OnLost is called (on a goroutine of its own) for a room this node holds
	// while another live node holds its lease (two rooms of one id, after a
	// race or a Redis restart): close it with CloseRelayLost so that its
	// peers reconnect to the owner.
	OnLost func(roomID string)
	// Prefix of every key and channel (default "mediasoup:").
	Prefix string
	// HeartbeatInterval (default 1s): how often the node renews its record
	// and its leases and reads the others'.
	HeartbeatInterval time.Duration
	// HeartbeatTTL (default 5s): a node whose record is this old is lost;
	// the peers relayed to or from it are closed and its rooms claimable.
	HeartbeatTTL time.Duration
	// LeaseTTL (default 15s): a room lease the owner stopped renewing lapses
	// after this long (an owner that died lapses at HeartbeatTTL already).
	LeaseTTL time.Duration
	// CommandTimeout bounds every Redis command (default 2s).
	CommandTimeout time.Duration
	Logger         *zap.Logger
}

func (o *RedisOptions) defaults() {
	setDefault(&o.Prefix, "mediasoup:")
	setDefault(&o.HeartbeatInterval, time.Second)
	setDefault(&o.HeartbeatTTL, 5*time.Second)
	setDefault(&o.LeaseTTL, 15*time.Second)
	setDefault(&o.CommandTimeout, 2*time.Second)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Draining == nil {
		o.Draining = func() bool { return false }
	}
	if o.OnLost == nil {
		o.OnLost = func(string) {}
	}
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Redis is the placement of a cluster node: a registry of live nodes (an
// expiring record per node, renewed by a heartbeat), room leases, and the
// relay (pub/sub, see relay.go).
//
// Keys (Prefix first): node:ID — the node's record (JSON), expires after
// HeartbeatTTL; nodes — the set of node ids ever seen (pruned of lost ones);
// room:ID — the id of the node owning the room, expires after LeaseTTL;
// relay:ID — the pub/sub channel of node ID.
type Redis struct {
	opts RedisOptions
	rdb  *redis.Client
	log  *zap.Logger
	boot string // this process's incarnation: a restarted node with the same id is a new node
	rl   *relay
	met  *redisMetrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	beatErr  error     // the last heartbeat's error; nil once one succeeded
	beatAt   time.Time // when the last heartbeat succeeded
	downFrom time.Time // since when Redis has been failing
	live     map[string]NodeInfo
	boots    map[string]string   // node id → incarnation, as last seen
	held     map[string]struct{} // room leases this node renewed last
}

// NewRedis starts a cluster node: it does not wait for Redis (a node whose
// Redis is away refuses new peers until it is back; see Ready).
func NewRedis(opts RedisOptions) (*Redis, error) {
	opts.defaults()
	if opts.NodeID == "" {
		return nil, errors.New("cluster: a node id is required")
	}
	if opts.Stats == nil {
		return nil, errors.New("cluster: Stats is required")
	}
	ro, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis url: %w", err)
	}
	ro.DialTimeout = opts.CommandTimeout
	ro.ReadTimeout = opts.CommandTimeout
	ro.WriteTimeout = opts.CommandTimeout
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = 1
	ro.PoolSize = 64
	ro.PoolTimeout = opts.CommandTimeout
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	r := &Redis{
		opts: opts, rdb: redis.NewClient(ro), log: opts.Logger, boot: hex.EncodeToString(b),
		beatErr: errors.New("not registered yet"), downFrom: time.Now(),
		live: map[string]NodeInfo{}, boots: map[string]string{}, held: map[string]struct{}{},
		met: newRedisMetrics(),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.rl = newRelay(r)
	r.wg.Add(2)
	go r.heartbeatLoop()
	go r.rl.receiveLoop()
	return r, nil
}

// NodeID is this node's id.
func (r *Redis) NodeID() string { return r.opts.NodeID }

// Relay is the pub/sub relay of this node.
func (r *Redis) Relay() Relay { return r.rl }

func (r *Redis) nodeKey(id string) string { return r.opts.Prefix + "node:" + id }
func (r *Redis) roomKey(id string) string { return r.opts.Prefix + "room:" + id }
func (r *Redis) channel(id string) string { return r.opts.Prefix + "relay:" + id }
func (r *Redis) nodesKey() string         { return r.opts.Prefix + "nodes" }
func (r *Redis) nodePrefix() string       { return r.opts.Prefix + "node:" }
func (r *Redis) cmdCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, r.opts.CommandTimeout)
}

// Ready is nil once the node is registered, its relay subscribed, and its
// last heartbeat reached Redis.
func (r *Redis) Ready() error {
	r.mu.Lock()
	err, from := r.beatErr, r.downFrom
	r.mu.Unlock()
	if err != nil {
		return &Unavailable{Why: fmt.Sprintf("redis unreachable since %s (%v): new peers are refused until it is back",
			from.UTC().Format(time.RFC3339), err)}
	}
	if err := r.rl.ready(); err != nil {
		return err
	}
	return nil
}

// locateScript returns the live owner of the room KEYS[1], or claims the
// room for the first live candidate of ARGV[3..]: {owner, claimed}. ARGV[1]
// is the node key prefix, ARGV[2] the lease in ms. A lease naming a node
// whose record expired is free: that node is lost.
var locateScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and redis.call('EXISTS', ARGV[1] .. cur) == 1 then
  return {cur, 0}
end
for i = 3, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 1 then
    redis.call('SET', KEYS[1], ARGV[i], 'PX', ARGV[2])
    return {ARGV[i], 1}
  end
end
return {'', 0}
`)

// renewScript renews the lease KEYS[1] for ARGV[1] (ARGV[2] ms) unless a
// live other node holds it; it answers the holder.
var renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. cur) == 1 then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`)

// releaseScript drops the lease KEYS[1] if ARGV[1] holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Locate returns the room's owner, claiming the room for the least-loaded
// live node that is not draining when no live node owns it: one round trip
// (a script), with the candidates taken from the last heartbeat's view.
func (r *Redis) Locate(ctx context.Context, roomID string) (Owner, error) {
	if err := r.Ready(); err != nil {
		return Owner{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.CommandTimeout)
	defer cancel()
	args := []any{r.nodePrefix(), r.opts.LeaseTTL.Milliseconds()}
	for _, id := range r.candidates() {
		args = append(args, id)
	}
	start := time.Now()
	res, err := locateScript.Run(ctx, r.rdb, []string{r.roomKey(roomID)}, args...).Slice()
	r.met.observeRTT(time.Since(start))
	if err != nil {
		r.met.redisErrors.Inc()
		return Owner{}, fmt.Errorf("redis: %w", err)
	}
	owner, _ := res[0].(string)
	if owner == "" {
		return Owner{}, &Unavailable{Why: "no live node can take a new room (all draining?)"}
	}
	if n, _ := res[1].(int64); n == 1 {
		r.log.Info("room claimed", zap.String("room", roomID), zap.String("owner", owner))
	}
	return Owner{Node: owner, Local: owner == r.opts.NodeID}, nil
}

// candidates are the live nodes that are not draining, least loaded first;
// this node's load is taken now, the others' from their last heartbeat.
func (r *Redis) candidates() []string {
	self, _ := r.opts.Stats()
	type cand struct {
		id   string
		load Load
	}
	var cs []cand
	if !r.opts.Draining() {
		cs = append(cs, cand{r.opts.NodeID, self})
	}
	r.mu.Lock()
	for id, n := range r.live {
		if id != r.opts.NodeID && !n.Draining {
			cs = append(cs, cand{id, n.Load})
		}
	}
	r.mu.Unlock()
	slices.SortStableFunc(cs, func(a, b cand) int {
		switch {
		case a.load.Less(b.load):
			return -1
		case b.load.Less(a.load):
			return 1
		case a.id == r.opts.NodeID:
			return -1 // a tie stays here: no relay
		case b.id == r.opts.NodeID:
			return 1
		}
		return 0
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.id
	}
	return out
}

// LiveNodes is the view of the last heartbeat: the live nodes (this one
// included once registered), with the load each reported.
func (r *Redis) LiveNodes() []NodeInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]NodeInfo, 0, len(r.live))
	for _, n := range r.live {
		out = append(out, n)
	}
	return out
}

// Nodes lists the live nodes as the registry has them now.
func (r *Redis) Nodes(ctx context.Context) ([]NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CommandTimeout)
	defer cancel()
	nodes, err := r.readNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		n.Self = n.ID == r.opts.NodeID
		out = append(out, n.NodeInfo)
	}
	return out, nil
}

type nodeRecord struct {
	NodeInfo
	Boot string `json:"boot"`
}

// readNodes reads every live node's record; ids whose record expired are
// dropped from the set.
func (r *Redis) readNodes(ctx context.Context) (map[string]nodeRecord, error) {
	ids, err := r.rdb.SMembers(ctx, r.nodesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	out := map[string]nodeRecord{}
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.nodeKey(id)
	}
	vals, err := r.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	var gone []any
	for i, v := range vals {
		s, ok := v.(string)
		var rec nodeRecord
		if !ok || json.Unmarshal([]byte(s), &rec) != nil {
			gone = append(gone, ids[i])
			continue
		}
		out[rec.ID] = rec
	}
	if len(gone) > 0 {
		_ = r.rdb.SRem(ctx, r.nodesKey(), gone...).Err()
	}
	return out, nil
}

func (r *Redis) heartbeatLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		r.heartbeat()
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat renews this node's record and its room leases, reads the
// others', and tells the relay which nodes were lost.
func (r *Redis) heartbeat() {
	ctx, cancel := r.cmdCtx()
	defer cancel()
	load, rooms := r.opts.Stats()
	if rooms == nil {
		rooms = []string{}
	}
	now := time.Now().UTC()
	rec := nodeRecord{NodeInfo: NodeInfo{ID: r.opts.NodeID, Draining: r.opts.Draining(), Load: load, Rooms: rooms, Seen: now}, Boot: r.boot}
	b, _ := json.Marshal(rec)
	start := time.Now()
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.nodeKey(r.opts.NodeID), b, r.opts.HeartbeatTTL)
		p.SAdd(ctx, r.nodesKey(), r.opts.NodeID)
		return nil
	})
	r.met.observeRTT(time.Since(start))
	var nodes map[string]nodeRecord
	if err == nil {
		nodes, err = r.readNodes(ctx)
	}
	if err == nil {
		err = r.renewLeases(ctx, rooms)
	}
	if err != nil {
		r.met.redisErrors.Inc()
		r.mu.Lock()
		if r.beatErr == nil {
			r.downFrom = time.Now()
			r.log.Warn("redis unreachable: refusing new peers; rooms here run on", zap.Error(err))
		}
		r.beatErr = err
		r.mu.Unlock()
		return
	}
	var lost []string
	r.mu.Lock()
	if r.beatErr != nil && !r.beatAt.IsZero() {
		r.log.Info("redis reachable again", zap.Duration("after", time.Since(r.downFrom)))
	}
	r.beatErr, r.beatAt = nil, time.Now()
	live := map[string]NodeInfo{}
	for id, rec := range nodes {
		live[id] = rec.NodeInfo
		if old, ok := r.boots[id]; ok && old != rec.Boot {
			lost = append(lost, id) // restarted with the same id: its old links are dead
		}
	}
	for id := range r.boots {
		if _, ok := nodes[id]; !ok {
			lost = append(lost, id)
		}
	}
	r.boots = map[string]string{}
	for id, rec := range nodes {
		r.boots[id] = rec.Boot
	}
	r.live = live
	r.mu.Unlock()
	for _, id := range lost {
		if id == r.opts.NodeID {
			continue
		}
		r.log.Warn("node lost: closing the peers relayed to or from it", zap.String("node", id))
		r.rl.nodeLost(id)
	}
}

// renewLeases renews the lease of every room held here (claiming those
// with none), releases the leases of rooms gone since the last heartbeat,
// and reports rooms whose lease another live node holds.
func (r *Redis) renewLeases(ctx context.Context, rooms []string) error {
	r.mu.Lock()
	var gone []string
	for id := range r.held {
		if !slices.Contains(rooms, id) {
			gone = append(gone, id)
		}
	}
	r.mu.Unlock()
	if len(rooms) == 0 && len(gone) == 0 {
		return nil
	}
	ttl := r.opts.LeaseTTL.Milliseconds()
	cmds, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range rooms {
			renewScript.Eval(ctx, p, []string{r.roomKey(id)}, r.opts.NodeID, ttl, r.nodePrefix())
		}
		for _, id := range gone {
			releaseScript.Eval(ctx, p, []string{r.roomKey(id)}, r.opts.NodeID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	held := map[string]struct{}{}
	for i, id := range rooms {
		holder, err := cmds[i].(*redis.Cmd).Text()
		if err != nil {
			return err
		}
		if holder != r.opts.NodeID {
			r.log.Warn("room held here is owned by another node: closing it here", zap.String("room", id), zap.String("owner", holder))
			go r.opts.OnLost(id)
			continue
		}
		held[id] = struct{}{}
	}
	r.mu.Lock()
	r.held = held
	r.mu.Unlock()
	return nil
}

// Close stops the node: the relay's links are closed (CloseRelayLost), the
// leases it holds are released and its record removed (best effort, each
// within the command timeout).
func (r *Redis) Close() {
	r.rl.closeAll("node shutting down")
	r.cancel()
	r.rl.mu.Lock()
	if ps := r.rl.ps; ps != nil {
		_ = ps.Close() // ends a receive in progress
	}
	r.rl.mu.Unlock()
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.CommandTimeout)
	defer cancel()
	r.mu.Lock()
	held := r.held
	r.held = map[string]struct{}{}
	r.mu.Unlock()
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id := range held {
			releaseScript.Eval(ctx, p, []string{r.roomKey(id)}, r.opts.NodeID)
		}
		p.Del(ctx, r.nodeKey(r.opts.NodeID))
		p.SRem(ctx, r.nodesKey(), r.opts.NodeID)
		return nil
	})
	r.rl.wait()
	_ = r.rdb.Close()
}
