package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediasoup-server/mediasoup-server/cluster"
	"github.com/mediasoup-server/mediasoup-server/config"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
)

// shutdownTimeout bounds each wait of the shutdown after the drain grace.
const shutdownTimeout = 5 * time.Second

// serve runs the server until a signal: pool, rooms, HTTP; then the drain
// and the shutdown, in the order that keeps mediasoup-go safe (no worker
// closes while a request to it is in flight).
func serve(cfg config.Config, log *zap.Logger) error {
	bin, err := worker.FindBinary(cfg.Worker.Bin)
	if err != nil {
		return err
	}
	listen, err := listenInfos(cfg, log)
	if err != nil {
		return err
	}
	pool, err := worker.New(worker.Options{
		Bin:             bin,
		Count:           cfg.WorkerCount(),
		RtcPort:         cfg.Worker.RtcPort,
		ListenInfos:     listen,
		LogLevel:        cfg.Worker.LogLevel,
		RespawnMinDelay: cfg.Worker.RespawnMinDelay.D(),
		RespawnMaxDelay: cfg.Worker.RespawnMaxDelay.D(),
		Logger:          log.Named("worker"),
	})
	if err != nil {
		return err
	}
	defer pool.Close()

	sg, rc := cfg.Signaling, cfg.Room
	rooms := room.NewManager(pool, room.Options{
		MaxPeersPerRoom:         rc.MaxPeers,
		MaxTransportsPerPeer:    rc.MaxTransportsPerPeer,
		MaxProducersPerPeer:     rc.MaxProducersPerPeer,
		MaxDataProducersPerPeer: rc.MaxDataProducersPerPeer,
		IceDisconnectGrace:      rc.IceDisconnectGrace.D(),
		RouterConsumerBudget:    rc.RouterConsumerBudget,
		MaxWorkersPerRoom:       rc.MaxWorkers,
		ServerRequestTimeout:    sg.ServerRequestTimeout.D(),
		// Broadcasters' plain RTP transports use the first listen address.
		PlainListenIP:         listen[0].IP,
		PlainAnnouncedAddress: listen[0].AnnouncedAddress,
		Logger:                log.Named("room"),
	})
	nodeID := cfg.NodeID
	if nodeID == "" {
		nodeID = defaultNodeID()
	}
	var placement cluster.Placement = &cluster.Local{ID: nodeID, Stats: nodeStats(rooms, pool)}
	var handlerp atomic.Pointer[signaling.Handler] // set once the handler exists
	if cfg.Redis.URL != "" {
		node, err := cluster.NewRedis(cluster.RedisOptions{
			URL: cfg.Redis.URL, NodeID: nodeID, Stats: nodeStats(rooms, pool),
			Draining: func() bool { h := handlerp.Load(); return h != nil && h.Draining() },
			OnLost: func(id string) {
				if r := rooms.Room(id); r != nil {
					r.Close(room.CloseWorkerDied, "room moved to another node")
				}
			},
			Logger: log.Named("cluster"),
		})
		if err != nil {
			return err
		}
		// Closed after the rooms and their peers (deferred: before pool.Close).
		defer node.Close()
		placement = node
		log.Info("cluster mode: rooms shared through redis", zap.String("node", nodeID), zap.String("redis", redactURL(cfg.Redis.URL)))
	}
	limits := signaling.DefaultLimits()
	limits.MaxFrameBytes = int64(sg.MaxFrameBytes)
	limits.RequestRate = float64(sg.RequestsPerSecond)
	limits.RequestBurst = sg.RequestBurst
	limits.MaxPendingServerRequests = sg.MaxPendingServerRequests
	limits.MaxMalformed = sg.MaxMalformedFrames
	limits.PingInterval = sg.PingInterval.D()
	limits.PongTimeout = sg.PongTimeout.D()
	limits.ServerRequestTimeout = sg.ServerRequestTimeout.D()
	limits.CheckOrigin = signaling.AllowOrigins(cfg.AllowedOrigins)
	handler := signaling.NewHandler(signaling.Options{
		Workers:   pool,
		Rooms:     rooms,
		Limits:    limits,
		Logger:    log.Named("signaling"),
		Version:   worker.Version,
		WebDir:    cfg.WebDir,
		Auth:      signaling.NewAuth(cfg.AuthSecret),
		Pprof:     cfg.Pprof,
		Placement: placement,
	})
	handlerp.Store(handler)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A request body that never comes, and an idle keep-alive connection,
		// are closed. (A WebSocket sets its own deadlines once upgraded.)
		ReadTimeout: 30 * time.Second,
		IdleTimeout: 60 * time.Second,
		ErrorLog:    zap.NewStdLog(log.Named("http")),
	}
	tls := cfg.TLSCert != ""
	errc := make(chan error, 1)
	go func() {
		if tls {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("listening", zap.String("url", publicURL(ln.Addr(), tls)), zap.Int("workers", cfg.WorkerCount()),
		zap.Bool("auth", cfg.AuthSecret != ""), zap.Duration("drainGrace", cfg.DrainGrace.D()))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case sig := <-sigs:
		log.Info("draining: refusing new peers; the rooms run on for the grace period (a second signal exits at once)",
			zap.String("signal", sig.String()), zap.Duration("grace", cfg.DrainGrace.D()))
	}
	handler.Drain()
	// A second signal: stop the workers and leave at once.
	go func() {
		sig := <-sigs
		log.Warn("second signal, exiting now", zap.String("signal", sig.String()))
		pool.Close()
		os.Exit(1)
	}()
	waitRoomsEmpty(rooms, cfg.DrainGrace.D(), log)

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("http shutdown", zap.Error(err))
	}
	// Peers are told not to reconnect (4000); no worker closes while a
	// request to it is still in flight (pool.Close runs last, deferred).
	rooms.CloseAll(room.CloseKicked, "server shutting down")
	// Peers relayed to rooms on other nodes: those rooms live on, so the
	// clients may reconnect (through another node).
	handler.CloseRelayed(room.CloseWorkerDied, "node shutting down: reconnect")
	if err := handler.Wait(ctx); err != nil {
		log.Warn("peer connections still open at exit", zap.Error(err))
	}
	if err := rooms.Wait(ctx); err != nil {
		log.Warn("room work still running at exit", zap.Error(err))
	}
	log.Info("shut down")
	return nil
}

// waitRoomsEmpty returns after grace, or earlier once no room is left.
func waitRoomsEmpty(rooms *room.Manager, grace time.Duration, log *zap.Logger) {
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if len(rooms.Rooms()) == 0 {
			log.Info("no rooms left, shutting down")
			return
		}
		<-tick.C
	}
	if n := len(rooms.Rooms()); n > 0 {
		log.Info("drain grace over, closing the rooms", zap.Int("rooms", n))
	}
}

// listenInfos are the addresses the workers bind, with the announced address
// filled in where the config leaves it to us, and a log line telling what
// was chosen and how to change it.
func listenInfos(cfg config.Config, log *zap.Logger) ([]worker.ListenInfo, error) {
	infos, chosen, err := config.AutoAnnounce(cfg.EffectiveListenInfos(), net.InterfaceAddrs)
	if err != nil {
		return nil, err
	}
	for _, a := range chosen {
		log.Info("announcing the host's first non-loopback address in ICE candidates for the unspecified listen IP; "+
			"set -announced-ip (env MEDIASOUP_SERVER_WORKER_ANNOUNCED_ADDRESS) or worker.listenInfos if clients reach this host by another address (NAT, Docker)",
			zap.String("listenIp", a.IP), zap.String("announcedAddress", a.Announced))
	}
	var out []worker.ListenInfo
	var desc []string
	for _, in := range infos {
		out = append(out, worker.ListenInfo{Protocol: in.Protocol, IP: in.IP, AnnouncedAddress: in.AnnouncedAddress,
			ExposeInternalIP: in.ExposeInternalIP})
		desc = append(desc, in.String())
		if in.AnnouncedAddress == "" && !isLoopback(in.IP) && len(chosen) == 0 {
			log.Info("no announced address: ICE candidates carry the listen IP; set -announced-ip (env MEDIASOUP_SERVER_WORKER_ANNOUNCED_ADDRESS) when clients reach this host through another address",
				zap.String("listenIp", in.IP))
		}
	}
	log.Info("media listen addresses", zap.String("listenInfos", strings.Join(desc, ",")), zap.Int("rtcPort", cfg.Worker.RtcPort))
	return out, nil
}

func isLoopback(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && p.IsLoopback()
}

// publicURL is the address a person on this machine can open.
func publicURL(a net.Addr, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return scheme + "://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}
