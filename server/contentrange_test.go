package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Issue 10, smaller finding: a malformed Content-Range on a PATCH is the
// client's error (416 RANGE_INVALID), never distribution's 500.
func TestPatchMalformedContentRangeIs416(t *testing.T) {
	ts := startServer(t, nil)
	loc := ts.startUpload(t, "range/a")
	// (" 0-2" is not among them: leading whitespace is not part of a
	// field value, RFC 9110 5.5, and HTTP/1.1, the registry's protocol,
	// strips it before the server sees the range.)
	for _, cr := range []string{"-5--1", "5-", "-", "x-y", "1-2-3", "+0-+2", "0 -2", "2-0",
		"99999999999999999999-99999999999999999999", "0x0-0x2", "bytes=0-2"} {
		t.Run(cr, func(t *testing.T) {
			resp := ts.do("PATCH", uploadPath(loc), "admin", ts.adminPW, []byte("abc"),
				map[string]string{"Content-Range": cr, "Content-Type": "application/octet-stream"})
			if code := errorCode(t, resp); resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || code != "RANGE_INVALID" {
				t.Errorf("PATCH with Content-Range %q: %d %s, want 416 RANGE_INVALID", cr, resp.StatusCode, code)
			}
		})
	}
	// The session is intact: a right range still works.
	resp := ts.do("PATCH", uploadPath(loc), "admin", ts.adminPW, []byte("abc"),
		map[string]string{"Content-Range": "0-2", "Content-Type": "application/octet-stream"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH with Content-Range 0-2 after the refusals: %d", resp.StatusCode)
	}
}

func FuzzCheckContentRange(f *testing.F) {
	for _, s := range []string{"0-0", "0-2", "-5--1", "1-", "9223372036854775807-9223372036854775807", "+1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkContentRange(s) != nil || s == "" {
			return
		}
		// What it accepts, distribution's parser reads as start <= end.
		start, end, err := parseContentRangeLikeDistribution(s)
		if err != nil || start < 0 || start > end {
			t.Fatalf("accepted %q: start %d end %d err %v", s, start, end, err)
		}
	})
}

// parseContentRangeLikeDistribution is distribution's parseContentRange
// (registry/handlers/helpers.go), which is not exported.
func parseContentRangeLikeDistribution(cr string) (int64, int64, error) {
	a, b, ok := strings.Cut(cr, "-")
	if !ok {
		return -1, -1, fmt.Errorf("invalid content range format, %s", cr)
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return -1, -1, err
	}
	end, err := strconv.ParseInt(b, 10, 64)
	if err != nil {
		return -1, -1, err
	}
	return start, end, nil
}
