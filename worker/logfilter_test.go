package worker

import (
	"context"
	"log/slog"
	"testing"
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
	log := slog.New(quietHandler{recordingHandler{rec}}).With("worker", 0)
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
