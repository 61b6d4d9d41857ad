package worker

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type recorded struct{ levels map[string]slog.Level }

type recordingHandler struct{ r *recorded }

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.r.levels[r.Message] = r.Level
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestQuietHandlerDemotesOnlyKnownBenignErrors(t *testing.T) {
	rec := &recorded{levels: map[string]slog.Level{}}
	log := slog.New(quietHandler{Handler: recordingHandler{rec}}).With("worker", 0)
	log.Error("received an unhandled notification", "subject", "x", "event", 3)
	log.Error("received an unhandled response", "id", 7)
	log.Error("request failed", "id", 1, "error", "NotFoundError", "reason", "Consumer not found")
	log.Error("Worker::HandleRequest() | throwing MediaSoupNotFoundError: Consumer not found [method:CONSUMER_RESUME]")
	log.Error("request failed (other)", "error", "Error")
	log.Error("worker process failed unexpectedly, code: -1")
	for msg, want := range map[string]slog.Level{
		"received an unhandled notification": slog.LevelDebug,
		"received an unhandled response":     slog.LevelWarn,
		"request failed":                     slog.LevelDebug,
		"Worker::HandleRequest() | throwing MediaSoupNotFoundError: Consumer not found [method:CONSUMER_RESUME]": slog.LevelDebug,
		"request failed (other)":                       slog.LevelError,
		"worker process failed unexpectedly, code: -1": slog.LevelError,
	} {
		if got := rec.levels[msg]; got != want {
			t.Errorf("%q logged at %v, want %v", msg, got, want)
		}
	}
	rec.levels = map[string]slog.Level{}
	log.Error("request failed", "error", "TypeError", "reason", "bad")
	if got := rec.levels["request failed"]; got != slog.LevelError {
		t.Errorf("request failed with TypeError logged at %v", got)
	}
}

// The attributes quietHandler holds back until a record is logged still
// reach it, in order, each logger with its own (siblings share nothing),
// and a group applies to what is added after it.
func TestQuietHandlerKeepsAttributes(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	base := slog.New(quietHandler{Handler: zapslog.NewHandler(core)}).With("worker", 0)
	parent := base.With("transportId", "t1").With("producerId", "p1") // spare capacity: siblings could share it
	c1 := parent.With("consumerId", "c1")
	c2 := parent.With("consumerId", "c2")
	c1.Info("one", "k", 1)
	c2.WithGroup("g").With("x", 2).Error("request failed", "error", "NotFoundError")
	parent.Warn("three")
	got := logs.AllUntimed()
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3", len(got))
	}
	keys := func(e observer.LoggedEntry) string {
		var ks []string
		for _, f := range e.Context {
			ks = append(ks, f.Key)
		}
		return strings.Join(ks, ",")
	}
	for i, want := range []string{"worker,transportId,producerId,consumerId,k", "worker,transportId,producerId,consumerId,g,x,error", "worker,transportId,producerId"} {
		if k := keys(got[i]); k != want {
			t.Errorf("entry %d (%q): fields %s, want %s", i, got[i].Message, k, want)
		}
	}
	if got[0].ContextMap()["consumerId"] != "c1" || got[1].ContextMap()["consumerId"] != "c2" {
		t.Errorf("consumer ids: %v, %v", got[0].ContextMap(), got[1].ContextMap())
	}
	if got[1].Level != zapcore.DebugLevel {
		t.Errorf("a NotFoundError request failure logged at %v, want debug", got[1].Level)
	}
}
