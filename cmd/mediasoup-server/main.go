// Command mediasoup-server runs a pool of mediasoup workers behind the room
// signaling protocol of PROTOCOL.md.
//
//	mediasoup-server [-config FILE] [-listen HOST:PORT] [-workers N] [-rtc-port N]
//	                 [-listen-ip IP] [-announced-ip ADDR] [-listen-infos LIST]
//	                 [-worker-bin PATH] [-tls-cert FILE -tls-key FILE]
//	                 [-drain-grace DURATION] [-auth-secret SECRET]
//	                 [-allowed-origins LIST] [-log-level LEVEL] ...
//	mediasoup-server token [-secret S] (-room R -peer P | -admin) [-ttl 1h]
//
// Flags override environment variables (MEDIASOUP_SERVER_*), which override the
// YAML file, which overrides the defaults; see config/mediasoup-server.sample.yaml.
// The token subcommand prints a signed token for the server's auth (see
// signaling.Claims).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/mediasoup-server/mediasoup-server/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
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
