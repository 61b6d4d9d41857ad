// Command mediasoup-server runs a pool of mediasoup workers behind the room
// signaling protocol of PROTOCOL.md.
//
//	mediasoup-server [-config FILE] [-listen HOST:PORT] [-workers N] [-rtc-port N]
//	                 [-listen-ip IP] [-announced-ip ADDR] [-worker-bin PATH]
//	                 [-tls-cert FILE -tls-key FILE] [-log-level LEVEL]
//
// Flags override environment variables (MEDIASOUP_SERVER_*), which override the
// YAML file, which overrides the defaults; see config/mediasoup-server.sample.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mediasoup-server/mediasoup-server/config"
	"github.com/mediasoup-server/mediasoup-server/room"
	"github.com/mediasoup-server/mediasoup-server/signaling"
	"github.com/mediasoup-server/mediasoup-server/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "mediasoup-server:", err)
		return 2
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediasoup-server:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	if err := serve(cfg, log); err != nil {
		log.Error("exiting", zap.Error(err))
		return 1
	}
	return 0
}

func serve(cfg config.Config, log *zap.Logger) error {
	bin, err := worker.FindBinary(cfg.Worker.Bin)
	if err != nil {
		return err
	}
	if cfg.Worker.AnnouncedAddress == "" {
		log.Info("no announced address: ICE candidates carry the listen IP; set -announced-ip (env MEDIASOUP_SERVER_WORKER_ANNOUNCED_ADDRESS) when clients reach this host through another address",
			zap.String("listenIp", cfg.Worker.ListenIP))
	}
	pool, err := worker.New(worker.Options{
		Bin:              bin,
		Count:            cfg.WorkerCount(),
		RtcPort:          cfg.Worker.RtcPort,
		ListenIP:         cfg.Worker.ListenIP,
		AnnouncedAddress: cfg.Worker.AnnouncedAddress,
		LogLevel:         cfg.Worker.LogLevel,
		RespawnMinDelay:  cfg.Worker.RespawnMinDelay.D(),
		RespawnMaxDelay:  cfg.Worker.RespawnMaxDelay.D(),
		Logger:           log.Named("worker"),
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
		ServerRequestTimeout:    sg.ServerRequestTimeout.D(),
		PlainListenIP:           cfg.Worker.ListenIP,
		PlainAnnouncedAddress:   cfg.Worker.AnnouncedAddress,
		Logger:                  log.Named("room"),
	})
	limits := signaling.DefaultLimits()
	limits.MaxFrameBytes = int64(sg.MaxFrameBytes)
	limits.RequestRate = float64(sg.RequestsPerSecond)
	limits.RequestBurst = sg.RequestBurst
	limits.MaxPendingServerRequests = sg.MaxPendingServerRequests
	limits.MaxMalformed = sg.MaxMalformedFrames
	limits.PingInterval = sg.PingInterval.D()
	limits.PongTimeout = sg.PongTimeout.D()
	limits.ServerRequestTimeout = sg.ServerRequestTimeout.D()
	handler := signaling.NewHandler(signaling.Options{
		Workers: pool,
		Rooms:   rooms,
		Limits:  limits,
		Logger:  log.Named("signaling"),
		Version: worker.Version,
		WebDir:  cfg.WebDir,
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
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
	log.Info("listening", zap.String("url", publicURL(ln.Addr(), tls)), zap.Int("workers", cfg.WorkerCount()))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case sig := <-sigs:
		log.Info("shutting down", zap.String("signal", sig.String()))
	}
	// A second signal while shutting down: stop the workers and leave at once.
	go func() {
		sig := <-sigs
		log.Warn("second signal, exiting now", zap.String("signal", sig.String()))
		pool.Close()
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("http shutdown", zap.Error(err))
	}
	// Peers are told not to reconnect (4000); no worker closes while a
	// request to it is still in flight (pool.Close runs last, deferred).
	rooms.CloseAll(room.CloseKicked, "server shutting down")
	if err := handler.Wait(ctx); err != nil {
		log.Warn("peer connections still open at exit", zap.Error(err))
	}
	if err := rooms.Wait(ctx); err != nil {
		log.Warn("room work still running at exit", zap.Error(err))
	}
	return nil
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

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = "console"
	zc.EncoderConfig = zap.NewDevelopmentEncoderConfig()
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.Sampling = nil
	zc.DisableStacktrace = true
	return zc.Build()
}
