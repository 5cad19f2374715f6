package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// distribution logs through the global logrus logger, and logs every 4xx
// answer ("manifest unknown" for each HEAD a client probes with) at error
// level. distLog forwards its entries to our slog logger, dropping request
// errors below 500: those are in the access log already and are the client's
// business, not the operator's.
var (
	distLogOnce sync.Once
	distLogger  atomic.Pointer[slog.Logger]
)

func routeDistributionLogs(l *slog.Logger) {
	distLogger.Store(l)
	distLogOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.WarnLevel) // below warn, entries are not even formatted
		logrus.AddHook(distHook{})
	})
}

type distHook struct{}

func (distHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (distHook) Fire(e *logrus.Entry) error {
	l := distLogger.Load()
	if l == nil {
		return nil
	}
	if st, ok := e.Data["http.response.status"].(int); ok && st < 500 {
		return nil
	}
	if strings.HasPrefix(e.Message, "Image index completeness validation has been disabled") {
		return nil // the sync path's own app, on purpose (sync.go); client pushes keep the check
	}
	level := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("component", "distribution")}
	for _, k := range []string{"err.code", "err.message", "err.detail", "http.request.method", "http.request.uri", "http.response.status", "error"} {
		if v, ok := e.Data[k]; ok {
			attrs = append(attrs, slog.Any(k, redactValue(v)))
		}
	}
	l.LogAttrs(context.Background(), level, redactState(e.Message), attrs...)
	return nil
}

// stateRE is an upload URL's _state parameter: distribution's signed
// token of the session, as good as the session's URL itself.
var stateRE = regexp.MustCompile(`(_state=)[^&\s"'<>]*`)

func redactState(s string) string {
	if !strings.Contains(s, "_state=") {
		return s
	}
	return stateRE.ReplaceAllString(s, "${1}REDACTED")
}

// redactValue is v with any _state in its text redacted; values whose
// text holds none are kept as they are.
func redactValue(v any) any {
	switch x := v.(type) {
	case string:
		return redactState(x)
	case int, int64, bool, nil:
		return v
	}
	if s := fmt.Sprint(v); strings.Contains(s, "_state=") {
		return redactState(s)
	}
	return v
}
