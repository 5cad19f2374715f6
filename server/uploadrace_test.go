package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// heldRequest is a request whose headers are sent and whose body is held
// until the test writes it.
type heldRequest struct {
	body *io.PipeWriter
	done chan *http.Response
}

func (ts *testServer) hold(t *testing.T, method, loc string, query string) *heldRequest {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(method, ts.url(uploadPath(loc)+query), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", ts.adminPW)
	req.Header.Set("Content-Type", "application/octet-stream")
	h := &heldRequest{body: pw, done: make(chan *http.Response, 1)}
	go func() {
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, loc, err)
			h.done <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		h.done <- resp
	}()
	return h
}

// finish writes the rest of the body and waits for the answer.
func (h *heldRequest) finish(t *testing.T, rest []byte) *http.Response {
	t.Helper()
	h.body.Write(rest)
	h.body.Close()
	select {
	case resp := <-h.done:
		if resp == nil {
			return &http.Response{Header: http.Header{}}
		}
		return resp
	case <-time.After(30 * time.Second):
		t.Fatal("held request did not finish")
		return nil
	}
}

// inside gives a held request time to get into the registry's handler:
// its headers are sent, and nothing on the server side tells from outside
// when they have been read.
func inside() { time.Sleep(300 * time.Millisecond) }

// uploadPath is the path and query of an upload's Location.
func uploadPath(loc string) string { return loc[strings.Index(loc, "/v2/"):] }

func (ts *testServer) startUpload(t *testing.T, repo string) string {
	t.Helper()
	resp := ts.do("POST", "/v2/"+repo+"/blobs/uploads/", "admin", ts.adminPW, nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func (ts *testServer) patch(t *testing.T, loc string, b []byte) string {
	t.Helper()
	resp := ts.do("PATCH", uploadPath(loc), "admin", ts.adminPW, b, map[string]string{"Content-Type": "application/octet-stream"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH upload: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// sessionDataSize is the size of an upload session's data file on disk, -1
// when it has none.
func (ts *testServer) sessionDataSize(loc string) int64 {
	p := uploadPath(loc)
	p = p[:strings.IndexByte(p+"?", '?')]
	repo, uuid, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/blobs/uploads/")
	fi, err := os.Stat(filepath.Join(osPath(ts.state.StorageDir(), uploadsDir(repo)), uuid, "data"))
	if err != nil {
		return -1
	}
	return fi.Size()
}

// waitData waits until the session's data file holds more than n bytes:
// the held request is inside the registry, writing.
func (ts *testServer) waitData(t *testing.T, loc string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ts.sessionDataSize(loc) <= n {
		if time.Now().After(deadline) {
			t.Fatalf("held request never wrote past %d bytes (now %d)", n, ts.sessionDataSize(loc))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Issue 10 A: a request racing another on one upload session must not
// drive the usage counter below what is on disk, so that afterwards the
// quota still holds. The racers are the review's sequence (a PATCH whose
// body is held, a DELETE, the PATCH finishing), a PUT racing a DELETE and
// two PATCHes racing.
func TestQuotaUploadSessionRacesCannotLowerUsage(t *testing.T) {
	const quota = 6 << 20
	const rounds = 4
	ts := startQuotaServer(t, quota)
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	tail := bytes.Repeat([]byte("c"), 512<<10)
	del := func(loc string) *http.Response {
		resp := ts.do("DELETE", uploadPath(loc), "admin", ts.adminPW, nil, nil)
		resp.Body.Close()
		return resp
	}

	variants := []struct {
		name string
		// run races on the session at loc and returns the status the
		// racer got and the session's newest location.
		run func(t *testing.T, loc string) (int, string)
	}{
		{"held PATCH, DELETE, PATCH finishes", func(t *testing.T, loc string) (int, string) {
			h := ts.hold(t, "PATCH", loc, "")
			inside()
			d := del(loc)
			return d.StatusCode, h.finish(t, tail).Header.Get("Location")
		}},
		{"held PUT, DELETE, PUT finishes", func(t *testing.T, loc string) (int, string) {
			sum := sha256.Sum256(append(append([]byte{}, chunk...), tail...))
			h := ts.hold(t, "PUT", loc, "&digest=sha256:"+hex.EncodeToString(sum[:]))
			inside()
			d := del(loc)
			h.finish(t, tail)
			return d.StatusCode, loc
		}},
		{"two PATCHes", func(t *testing.T, loc string) (int, string) {
			h := ts.hold(t, "PATCH", loc, "")
			h2 := ts.hold(t, "PATCH", loc, "")
			inside()
			r1 := h.finish(t, tail)
			r2 := h2.finish(t, tail)
			if l := r1.Header.Get("Location"); l != "" {
				loc = l
			}
			if l := r2.Header.Get("Location"); l != "" {
				loc = l
			}
			if r1.StatusCode == http.StatusConflict {
				return r1.StatusCode, loc
			}
			return r2.StatusCode, loc
		}},
	}
	for _, v := range variants {
		for i := 0; i < rounds; i++ {
			loc := ts.patch(t, ts.startUpload(t, "race/a"), chunk)
			status, last := v.run(t, loc)
			if last != "" {
				del(last) // whatever the racers got, the session goes
			}
			counter, disk := ts.srv.StorageUsed(), ts.usedBytes()
			t.Logf("%s, round %d: racer got %d; usage counter %d, on disk %d", v.name, i+1, status, counter, disk)
			if counter < disk {
				t.Errorf("%s, round %d: usage counter %d is below what is on disk (%d)", v.name, i+1, counter, disk)
			}
		}
	}

	// Then the quota must hold: blobs of 1 MiB until one is refused.
	stored := 0
	for i := 0; i < 2*quota/len(chunk); i++ {
		b := bytes.Repeat([]byte{byte(i)}, len(chunk))
		sum := sha256.Sum256(b)
		loc := ts.startUpload(t, "race/fill")
		resp := ts.do("PUT", uploadPath(loc)+"&digest=sha256:"+hex.EncodeToString(sum[:]), "admin", ts.adminPW, b,
			map[string]string{"Content-Type": "application/octet-stream"})
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			break
		}
		stored++
	}
	disk := ts.usedBytes()
	t.Logf("after the races: %d blobs of 1 MiB stored; %d bytes on disk against a quota of %d", stored, disk, quota)
	if disk > quota {
		t.Errorf("%d bytes stored against a quota of %d", disk, quota)
	}
}
