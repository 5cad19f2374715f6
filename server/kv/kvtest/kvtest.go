// Package kvtest is the contract every kv.Store passes (as distribution's
// storage drivers pass driver/testsuites), and the pinned MinIO the S3
// tests, the soak and the benchmarks run against.
package kvtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgecr/edgecr/server/kv"
)

// Run runs the contract against the stores open returns: a new, empty
// store for each call.
func Run(t *testing.T, open func(t *testing.T) kv.Store) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, kv.Store)
	}{
		{"CRUD", testCRUD},
		{"InvalidKeys", testInvalidKeys},
		{"CreateRace", testCreateRace},
		{"CASCounter", testCASCounter},
		{"TokenUses", testTokenUses},
		{"ListPaging", testListPaging},
		{"ConditionalRead", testConditionalRead},
		{"OddKeys", testOddKeys},
		{"LargeValue", testLargeValue},
		{"ContextCanceled", testContextCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, open(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s kv.Store, key string, val []byte, ifVer kv.Version) kv.Version {
	t.Helper()
	v, err := s.Put(ctxT(t), key, val, ifVer)
	if err != nil {
		t.Fatalf("Put(%q, ifVer %q): %v", key, ifVer, err)
	}
	if v == "" {
		t.Fatalf("Put(%q) returned an empty version", key)
	}
	return v
}

func wantGet(t *testing.T, s kv.Store, key string, want []byte, wantVer kv.Version) {
	t.Helper()
	got, v, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %.60q, want %.60q", key, got, want)
	}
	if wantVer != "" && v != wantVer {
		t.Fatalf("Get(%q) version %q, want %q (the version Put returned)", key, v, wantVer)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func testCRUD(t *testing.T, s kv.Store) {
	ctx := ctxT(t)
	_, _, err := s.Get(ctx, "a/b")
	wantErr(t, "Get of a key never written", err, kv.ErrNotFound)

	v1 := mustPut(t, s, "a/b", []byte("one"), "")
	wantGet(t, s, "a/b", []byte("one"), v1)

	_, err = s.Put(ctx, "a/b", []byte("other"), "")
	wantErr(t, "create-only Put of an existing key", err, kv.ErrConflict)
	wantGet(t, s, "a/b", []byte("one"), v1)

	v2 := mustPut(t, s, "a/b", []byte("two"), v1)
	if v2 == v1 {
		t.Fatalf("new value, same version %q", v2)
	}
	wantGet(t, s, "a/b", []byte("two"), v2)

	_, err = s.Put(ctx, "a/b", []byte("three"), v1)
	wantErr(t, "Put with a stale version", err, kv.ErrConflict)
	wantGet(t, s, "a/b", []byte("two"), v2)

	err = s.Delete(ctx, "a/b", v1)
	wantErr(t, "Delete with a stale version", err, kv.ErrConflict)
	wantGet(t, s, "a/b", []byte("two"), v2)

	// A key and keys under it are independent.
	mustPut(t, s, "a", []byte("parent"), "")
	mustPut(t, s, "a/b/c", []byte("child"), "")

	if err := s.Delete(ctx, "a/b", v2); err != nil {
		t.Fatalf("Delete with the current version: %v", err)
	}
	_, _, err = s.Get(ctx, "a/b")
	wantErr(t, "Get after Delete", err, kv.ErrNotFound)
	wantGet(t, s, "a", []byte("parent"), "")
	wantGet(t, s, "a/b/c", []byte("child"), "")

	_, err = s.Put(ctx, "a/b", []byte("x"), v2)
	wantErr(t, "Put with a version of a deleted key", err, kv.ErrConflict)
	err = s.Delete(ctx, "a/b", v2)
	wantErr(t, "conditional Delete of a deleted key", err, kv.ErrConflict)
	if err := s.Delete(ctx, "a/b", ""); err != nil {
		t.Fatalf("unconditional Delete of an absent key: %v", err)
	}
	// A key deleted by version can be created again, once.
	v3 := mustPut(t, s, "a/b/c", []byte("c2"), mustGetVer(t, s, "a/b/c"))
	if err := s.Delete(ctx, "a/b/c", v3); err != nil {
		t.Fatal(err)
	}
	v4 := mustPut(t, s, "a/b/c", []byte("again"), "")
	_, err = s.Put(ctx, "a/b/c", []byte("twice"), "")
	wantErr(t, "second create-only Put after a Delete", err, kv.ErrConflict)
	wantGet(t, s, "a/b/c", []byte("again"), v4)

	// Empty values are values.
	ve := mustPut(t, s, "empty", nil, "")
	wantGet(t, s, "empty", []byte{}, ve)
	if err := s.Delete(ctx, "a/b/c", ""); err != nil {
		t.Fatalf("unconditional Delete: %v", err)
	}
	_, _, err = s.Get(ctx, "a/b/c")
	wantErr(t, "Get after unconditional Delete", err, kv.ErrNotFound)
}

func mustGetVer(t *testing.T, s kv.Store, key string) kv.Version {
	t.Helper()
	_, v, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func testInvalidKeys(t *testing.T, s kv.Store) {
	ctx := ctxT(t)
	long := string(bytes.Repeat([]byte("k/"), kv.MaxKeyLen)) + "k"
	seg := string(bytes.Repeat([]byte("s"), kv.MaxSegmentLen+1))
	for _, key := range []string{"", "/a", "a/", "a//b", "..", "a/./b", "a/../b", "a\x00b", "a\nb", "\xff", "a b", "a!", "a\x7f", long, seg} {
		if _, err := s.Put(ctx, key, []byte("x"), ""); err == nil {
			t.Errorf("Put(%.40q) accepted an invalid key", key)
		}
		if _, _, err := s.Get(ctx, key); err == nil || errors.Is(err, kv.ErrNotFound) {
			t.Errorf("Get(%.40q) = %v, want an invalid-key error", key, err)
		}
		if err := s.Delete(ctx, key, ""); err == nil {
			t.Errorf("Delete(%.40q) accepted an invalid key", key)
		}
	}
	if _, err := s.List(ctx, "", "", 0); err == nil {
		t.Error("List with limit 0 accepted")
	}
	if keys, err := s.List(ctx, "", "", 10); err != nil || len(keys) != 0 {
		t.Errorf("List after rejected writes = %q, %v; want nothing stored", keys, err)
	}
}

// testCreateRace races creators of one key; the second round races them
// on the key after a delete by version (for S3, over a tombstone).
func testCreateRace(t *testing.T, s kv.Store) {
	for round := range 2 {
		v := createRace(t, s)
		if round == 0 {
			if err := s.Delete(ctxT(t), "race/create", v); err != nil {
				t.Fatalf("Delete of the winner's value: %v", err)
			}
		}
	}
}

func createRace(t *testing.T, s kv.Store) kv.Version {
	const n = 20
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Put(ctx, "race/create", []byte(strconv.Itoa(i)), "")
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("two creators won: %d and %d", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, kv.ErrConflict):
			t.Fatalf("creator %d: %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creator won")
	}
	wantGet(t, s, "race/create", []byte(strconv.Itoa(winner)), "")
	return mustGetVer(t, s, "race/create")
}

// update applies f to key's value by compare-and-swap, retrying on
// conflict; f returning an error stops it.
func update(ctx context.Context, s kv.Store, key string, f func([]byte) ([]byte, error)) (conflicts int, err error) {
	for {
		val, ver, err := s.Get(ctx, key)
		if err != nil {
			return conflicts, err
		}
		nv, err := f(val)
		if err != nil {
			return conflicts, err
		}
		if _, err = s.Put(ctx, key, nv, ver); err == nil {
			return conflicts, nil
		}
		if !errors.Is(err, kv.ErrConflict) {
			return conflicts, err
		}
		conflicts++
		select {
		case <-ctx.Done():
			return conflicts, ctx.Err()
		case <-time.After(time.Duration(conflicts%5) * time.Millisecond):
		}
	}
}

func testCASCounter(t *testing.T, s kv.Store) {
	const n = 50
	ctx := ctxT(t)
	mustPut(t, s, "counter", []byte("0"), "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := update(ctx, s, "counter", func(b []byte) ([]byte, error) {
				i, err := strconv.Atoi(string(b))
				return []byte(strconv.Itoa(i + 1)), err
			})
			mu.Lock()
			total += c
			mu.Unlock()
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("increment: %v", err)
		}
	}
	wantGet(t, s, "counter", []byte(strconv.Itoa(n)), "")
	t.Logf("%d increments, %d conflicts retried", n, total)
}

var errUsedUp = errors.New("token used up")

func testTokenUses(t *testing.T, s kv.Store) {
	const uses, redeemers = 10, 30
	type token struct{ Uses int }
	ctx := ctxT(t)
	b, _ := json.Marshal(token{Uses: uses})
	mustPut(t, s, "tokens/t1", b, "")
	var wg sync.WaitGroup
	results := make(chan error, redeemers)
	start := make(chan struct{})
	for range redeemers {
		wg.Go(func() {
			<-start
			_, err := update(ctx, s, "tokens/t1", func(b []byte) ([]byte, error) {
				var tk token
				if err := json.Unmarshal(b, &tk); err != nil {
					return nil, err
				}
				if tk.Uses == 0 {
					return nil, errUsedUp
				}
				tk.Uses--
				return json.Marshal(tk)
			})
			results <- err
		})
	}
	close(start)
	wg.Wait()
	close(results)
	ok, used := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, errUsedUp):
			used++
		default:
			t.Fatalf("redeem: %v", err)
		}
	}
	if ok != uses || used != redeemers-uses {
		t.Fatalf("%d redeemed, %d used up; want %d and %d", ok, used, uses, redeemers-uses)
	}
	wantGet(t, s, "tokens/t1", []byte(`{"Uses":0}`), "")
}

func listAll(t *testing.T, s kv.Store, prefix string, page int) []string {
	t.Helper()
	var all []string
	after := ""
	for i := 0; ; i++ {
		keys, err := s.List(ctxT(t), prefix, after, page)
		if err != nil {
			t.Fatalf("List(%q, %q, %d): %v", prefix, after, page, err)
		}
		if len(keys) > page {
			t.Fatalf("List(%q, %q, %d) returned %d keys", prefix, after, page, len(keys))
		}
		all = append(all, keys...)
		if len(keys) < page {
			return all
		}
		after = keys[len(keys)-1]
		if i > 1000 {
			t.Fatal("List does not end")
		}
	}
}

func testListPaging(t *testing.T, s kv.Store) {
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("p/%02d", i)
		if i%5 == 0 {
			k = fmt.Sprintf("p/%02d/sub", i)
		}
		mustPut(t, s, k, []byte("v"), "")
		want = append(want, k)
	}
	for _, k := range []string{"p", "pa/x", "o/p/x", "q"} {
		mustPut(t, s, k, []byte("other"), "")
	}
	// Keys deleted (by version or not) are not listed.
	for _, k := range []string{"p/05", "p/17x"} {
		v := mustPut(t, s, k, []byte("gone"), "")
		if err := s.Delete(ctxT(t), k, v); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, s, "p/99", []byte("gone"), "")
	if err := s.Delete(ctxT(t), "p/99", ""); err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	for _, page := range []int{1, 7, 25, 1000} {
		if got := listAll(t, s, "p/", page); !slices.Equal(got, want) {
			t.Fatalf("List p/ by pages of %d:\n got %q\nwant %q", page, got, want)
		}
	}
	if got, want := listAll(t, s, "p", 4), append([]string{"p"}, append(slices.Clone(want), "pa/x")...); !slices.Equal(got, want) {
		t.Fatalf("List p:\n got %q\nwant %q", got, want)
	}
	if got := listAll(t, s, "p/1", 3); !slices.Equal(got, want[10:20]) {
		t.Fatalf("List p/1 (a partial segment):\n got %q\nwant %q", got, want[10:20])
	}
	if got := listAll(t, s, "", 10); len(got) != 29 {
		t.Fatalf("List of everything: %d keys, want 29: %q", len(got), got)
	}
	keys, err := s.List(ctxT(t), "p/", "p/12", 3)
	if err != nil || !slices.Equal(keys, []string{"p/13", "p/14", "p/15/sub"}) {
		t.Fatalf("List after p/12 = %q, %v", keys, err)
	}
	keys, err = s.List(ctxT(t), "nothing/", "", 10)
	if err != nil || len(keys) != 0 {
		t.Fatalf("List of an absent prefix = %q, %v", keys, err)
	}
}

func testConditionalRead(t *testing.T, s kv.Store) {
	ctx := ctxT(t)
	v1 := mustPut(t, s, "revocations", []byte("1"), "")
	val, v, changed, err := s.GetIfChanged(ctx, "revocations", v1)
	if err != nil || changed || val != nil || v != v1 {
		t.Fatalf("GetIfChanged(current) = %q, %q, %v, %v; want nil, %q, false, nil", val, v, changed, err, v1)
	}
	v2 := mustPut(t, s, "revocations", []byte("2"), v1)
	val, v, changed, err = s.GetIfChanged(ctx, "revocations", v1)
	if err != nil || !changed || string(val) != "2" || v != v2 {
		t.Fatalf("GetIfChanged(old) = %q, %q, %v, %v; want \"2\", %q, true, nil", val, v, changed, err, v2)
	}
	val, v, changed, err = s.GetIfChanged(ctx, "revocations", "")
	if err != nil || !changed || string(val) != "2" || v != v2 {
		t.Fatalf("GetIfChanged(\"\") = %q, %q, %v, %v; want the value", val, v, changed, err)
	}
	if err := s.Delete(ctx, "revocations", v2); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = s.GetIfChanged(ctx, "revocations", v2)
	wantErr(t, "GetIfChanged of a deleted key", err, kv.ErrNotFound)
}

// OddKeys are keys that a path or URL mapping could get wrong.
var OddKeys = []string{
	"a+b/c+d", "ü/ñ/日本", "%41", "%2F", "a?b#c&d=e", "A", "a", "Ab/aB", "with.dot/..x/.y", "x:y;z",
	`back\slash`, "star*/quote'\"", "tilde~/(paren)/[x]{y}", "a/b", "a/b.v", "-/_", "@$", "con", "nul/com1/lpt9",
}

func testOddKeys(t *testing.T, s kv.Store) {
	vers := map[string]kv.Version{}
	for _, k := range OddKeys {
		vers[k] = mustPut(t, s, k, []byte("value of "+k), "")
	}
	for _, k := range OddKeys {
		wantGet(t, s, k, []byte("value of "+k), vers[k])
	}
	want := slices.Clone(OddKeys)
	sort.Strings(want)
	if got := listAll(t, s, "", 5); !slices.Equal(got, want) {
		t.Fatalf("List:\n got %q\nwant %q", got, want)
	}
	for _, k := range OddKeys {
		if err := s.Delete(ctxT(t), k, vers[k]); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	if got := listAll(t, s, "", 5); len(got) != 0 {
		t.Fatalf("List after deleting all: %q", got)
	}
}

func testLargeValue(t *testing.T, s kv.Store) {
	val := make([]byte, 8<<20+3)
	rand.Read(val)
	v := mustPut(t, s, "large", val, "")
	wantGet(t, s, "large", val, v)
	val[len(val)/2] ^= 1
	v2 := mustPut(t, s, "large", val, v)
	wantGet(t, s, "large", val, v2)
}

func testContextCanceled(t *testing.T, s kv.Store) {
	v := mustPut(t, s, "k", []byte("before"), "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Get(ctx, "k")
	wantErr(t, "Get", err, context.Canceled)
	_, _, _, err = s.GetIfChanged(ctx, "k", "other")
	wantErr(t, "GetIfChanged", err, context.Canceled)
	_, err = s.Put(ctx, "k", []byte("after"), v)
	wantErr(t, "Put", err, context.Canceled)
	_, err = s.Put(ctx, "new", []byte("x"), "")
	wantErr(t, "Put create", err, context.Canceled)
	err = s.Delete(ctx, "k", v)
	wantErr(t, "Delete", err, context.Canceled)
	_, err = s.List(ctx, "", "", 10)
	wantErr(t, "List", err, context.Canceled)
	// Nothing changed.
	wantGet(t, s, "k", []byte("before"), v)
	_, _, err = s.Get(context.Background(), "new")
	wantErr(t, "Get of a key created with a canceled context", err, kv.ErrNotFound)

	// A deadline that passes during a request ends it too.
	ctx, cancel = context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	_, _, err = s.Get(ctx, "k")
	wantErr(t, "Get past its deadline", err, context.DeadlineExceeded)
}
