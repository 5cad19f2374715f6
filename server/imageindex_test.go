package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// indexRefs is every repo:tag of a view of x, sorted.
func indexRefs(t *testing.T, x *imageIndex) []string {
	t.Helper()
	snap, err := x.view(context.Background())
	if err != nil {
		t.Fatalf("viewing the image index: %v", err)
	}
	refs := []string{}
	for _, r := range snap.Repos {
		for _, tg := range r.Tags {
			refs = append(refs, r.Name+":"+tg.Tag)
		}
	}
	slices.Sort(refs)
	return refs
}

// waitRefs views x until it lists want, for up to limit, and returns how
// long that took.
func waitRefs(t *testing.T, x *imageIndex, want []string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := indexRefs(t, x)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("the image index lists %q after %v, want %q", got, limit, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rebuild waits for a build under way, then builds x again and waits.
func rebuild(t *testing.T, x *imageIndex) {
	t.Helper()
	for range 2 {
		x.mu.Lock()
		done := x.startBuildLocked()
		x.mu.Unlock()
		<-done
	}
	if x.buildErr != nil {
		t.Fatalf("building the image index: %v", x.buildErr)
	}
}

// TestImageIndexFollowsOwnWrites: what this server writes (push, tag,
// delete through the registry) shows in the next view; a change behind its
// back does not until a garbage collection (this server's or another
// process's) rebuilds the index.
func TestImageIndexFollowsOwnWrites(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.ImageIndexAge = time.Hour // only writes and collections refresh it here
		o.UsageRefresh = 200 * time.Millisecond
	})
	x := ts.srv.imgIndex
	if got := indexRefs(t, x); len(got) != 0 {
		t.Fatalf("empty registry: index lists %q", got)
	}
	img := ociImage(t, 1024, 1)
	ts.push(t, "app:v1", img)
	if got := indexRefs(t, x); !slices.Equal(got, []string{"app:v1"}) {
		t.Fatalf("after pushing app:v1 the next view lists %q", got)
	}
	ts.push(t, "app:v2", img)
	ts.push(t, "team/other:1", ociImage(t, 512, 1))
	if got := indexRefs(t, x); !slices.Equal(got, []string{"app:v1", "app:v2", "team/other:1"}) {
		t.Fatalf("after two more pushes the next view lists %q", got)
	}
	ts.deleteManifest(t, "app", "v2")
	if got := indexRefs(t, x); !slices.Equal(got, []string{"app:v1", "team/other:1"}) {
		t.Fatalf("after deleting app:v2 the next view lists %q", got)
	}
	od, _ := img.Digest()
	ts.deleteManifest(t, "app", od.String())
	if got := indexRefs(t, x); !slices.Equal(got, []string{"team/other:1"}) {
		t.Fatalf("after deleting app's manifest by digest the next view lists %q", got)
	}

	// Behind the server's back (as another process would): not seen
	// until a collection.
	if err := ts.state.DeleteTag(context.Background(), "team/other", "1"); err != nil {
		t.Fatal(err)
	}
	if got := indexRefs(t, x); !slices.Equal(got, []string{"team/other:1"}) {
		t.Fatalf("a change behind the server's back shows before the bound or a collection: %q", got)
	}
	ts.gc(t, GCOptions{})
	waitRefs(t, x, []string{}, 10*time.Second)

	// A collection by another process (edgecrd gc), noticed by the
	// storage loop.
	ts.push(t, "app:v3", img)
	ts.push(t, "app:v4", img)
	if got := indexRefs(t, x); !slices.Equal(got, []string{"app:v3", "app:v4"}) {
		t.Fatalf("after pushing app:v3 and v4 the next view lists %q", got)
	}
	if err := ts.state.DeleteTag(context.Background(), "app", "v3"); err != nil {
		t.Fatal(err)
	}
	ts.gcExternal(t, GCOptions{})
	waitRefs(t, x, []string{"app:v4"}, 10*time.Second)
}

// TestImageIndexBound: a write the server cannot see (another replica's)
// shows once the index is older than ImageIndexAge: the next view starts a
// rebuild, and a view after it lists the change.
func TestImageIndexBound(t *testing.T) {
	const bound = 300 * time.Millisecond
	ts := startServer(t, func(o *Options) { o.ImageIndexAge = bound })
	x := ts.srv.imgIndex
	img := ociImage(t, 1024, 1)
	ts.push(t, "app:v1", img)
	ts.push(t, "app:v2", img)
	rebuild(t, x)
	if err := ts.state.DeleteTag(context.Background(), "app", "v1"); err != nil {
		t.Fatal(err)
	}
	if got := indexRefs(t, x); !slices.Equal(got, []string{"app:v1", "app:v2"}) {
		t.Fatalf("a view right after a rebuild re-read storage: %q", got)
	}
	took := waitRefs(t, x, []string{"app:v2"}, bound+10*time.Second)
	t.Logf("the change showed after %v (bound %v)", took, bound)
}

// TestS3ImageIndexOtherReplica: on a bucket, a push and a delete through
// one replica show on the other's Images page within its ImageIndexAge
// (and the rebuild), and at once on the replica that took them.
func TestS3ImageIndexOtherReplica(t *testing.T) {
	const bound = 500 * time.Millisecond
	site := startS3Site(t)
	r1 := site.replica(t, func(o *Options) { o.ImageIndexAge = time.Hour })
	r2 := site.replica(t, func(o *Options) { o.ImageIndexAge = bound })
	if got := indexRefs(t, r2.srv.imgIndex); len(got) != 0 {
		t.Fatalf("empty bucket: replica 2 lists %q", got)
	}
	img := ociImage(t, 1024, 1)
	r1.push(t, "team/app:v1", img)
	if got := indexRefs(t, r1.srv.imgIndex); !slices.Equal(got, []string{"team/app:v1"}) {
		t.Fatalf("replica 1 after its own push lists %q", got)
	}
	took := waitRefs(t, r2.srv.imgIndex, []string{"team/app:v1"}, bound+20*time.Second)
	t.Logf("replica 2 showed the push after %v (bound %v)", took, bound)
	r1.deleteManifest(t, "team/app", "v1")
	if got := indexRefs(t, r1.srv.imgIndex); len(got) != 0 {
		t.Fatalf("replica 1 after its own delete lists %q", got)
	}
	took = waitRefs(t, r2.srv.imgIndex, []string{}, bound+20*time.Second)
	t.Logf("replica 2 showed the delete after %v (bound %v)", took, bound)
}

func TestSelectImages(t *testing.T) {
	var repos []ImageRepo
	for r := range 45 {
		ir := ImageRepo{Name: fmt.Sprintf("fleet/repo%04d", r)}
		for tg := range 3 {
			ir.Tags = append(ir.Tags, ImageTag{Tag: fmt.Sprintf("T%02d", tg)})
		}
		repos = append(repos, ir)
	}
	names := func(p imagePage) string {
		var s []string
		for _, r := range p.Repos {
			var tags []string
			for _, tg := range r.Tags {
				tags = append(tags, tg.Tag)
			}
			s = append(s, strings.TrimPrefix(r.Name, "fleet/repo")+"["+strings.Join(tags, ",")+"]")
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct {
		q                 string
		page, perPage     int
		wantPage, wantOf  int
		wantRepos         int
		wantTags          int
		wantFirst, wantIn string
	}{
		{"", 1, 20, 1, 3, 45, 135, "0000[T00,T01,T02]", ""},
		{"", 3, 20, 3, 3, 45, 135, "0040[T00,T01,T02]", "0044"},
		{"", 99, 20, 3, 3, 45, 135, "0040", ""},      // past the end: the last page
		{"", 0, 20, 1, 3, 45, 135, "0000", ""},       // before the start: the first
		{"", 1, 45, 1, 1, 45, 135, "0000", "0044"},   // exactly one page
		{"REPO001", 1, 20, 1, 1, 10, 30, "0010", ""}, // any case, any part
		{"repo0003:t01", 1, 20, 1, 1, 1, 1, "0003[T01]", ""},
		{":t02", 1, 20, 1, 3, 45, 45, "0000[T02]", ""}, // a tag in every repository
		{"repo0003:", 1, 20, 1, 1, 1, 3, "0003[T00,T01,T02]", ""},
		{"nothing", 1, 20, 1, 1, 0, 0, "", ""},
		{"repo0003:x", 1, 20, 1, 1, 0, 0, "", ""},
	} {
		t.Run(fmt.Sprintf("%q/page%d", c.q, c.page), func(t *testing.T) {
			q, err := parseImageSearch(c.q)
			if err != nil {
				t.Fatal(err)
			}
			p := selectImages(repos, q, c.page, c.perPage)
			got := names(p)
			if p.Page != c.wantPage || p.Pages != c.wantOf || p.MatchedRepos != c.wantRepos || p.MatchedTags != c.wantTags ||
				!strings.HasPrefix(got, c.wantFirst) || !strings.Contains(got, c.wantIn) || p.TotalRepos != 45 || p.TotalTags != 135 {
				t.Errorf("page %d of %d, %d repos %d tags (of %d, %d): %s; want page %d of %d, %d repos %d tags, starting %q, holding %q",
					p.Page, p.Pages, p.MatchedRepos, p.MatchedTags, p.TotalRepos, p.TotalTags, got, c.wantPage, c.wantOf, c.wantRepos, c.wantTags, c.wantFirst, c.wantIn)
			}
			if len(p.Repos) > c.perPage {
				t.Errorf("%d repositories on a page of %d", len(p.Repos), c.perPage)
			}
		})
	}
	// The index's own repositories are not changed by a tag search.
	selectImages(repos, imageSearch{Tag: "t01", HasTag: true}, 1, 20)
	if len(repos[0].Tags) != 3 {
		t.Errorf("a tag search changed the index: %+v", repos[0])
	}
}

func TestParseImageSearch(t *testing.T) {
	for _, c := range []struct {
		in   string
		want imageSearch
	}{
		{"", imageSearch{}},
		{"  App ", imageSearch{Repo: "app"}},
		{"team/app:V1.0-rc_2", imageSearch{Repo: "team/app", Tag: "v1.0-rc_2", HasTag: true}},
		{":latest", imageSearch{Tag: "latest", HasTag: true}},
		{"app:", imageSearch{Repo: "app", HasTag: true}},
	} {
		got, err := parseImageSearch(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseImageSearch(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"a b", "app:v1:v2", "app:v/1", "app@sha256:ab", "<script>", "app\x00", "ä", "app:ä",
		strings.Repeat("a", maxImageSearch+1),
	} {
		if _, err := parseImageSearch(in); !errors.Is(err, ErrBadImageSearch) {
			t.Errorf("parseImageSearch(%q): %v, want ErrBadImageSearch", in, err)
		}
	}
}

func FuzzParseImageSearch(f *testing.F) {
	for _, s := range []string{"", "app", "team/app:v1", ":v1", "a b", "app:v1:v2", "ä"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseImageSearch(s)
		if err != nil {
			if !errors.Is(err, ErrBadImageSearch) {
				t.Fatalf("parseImageSearch(%q): %v is not ErrBadImageSearch", s, err)
			}
			return
		}
		if len(q.Repo)+len(q.Tag) > maxImageSearch || strings.ContainsAny(q.Repo+q.Tag, ": \t<>\"&") || (!q.HasTag && q.Tag != "") {
			t.Fatalf("parseImageSearch(%q) = %+v", s, q)
		}
		selectImages([]ImageRepo{{Name: "a/b", Tags: []ImageTag{{Tag: "v1"}}}}, q, 1, 20)
	})
}

// TestUIImagesPagingAndSearch: the Images page shows 20 repositories a
// page with links to the others, finds REPO and REPO:TAG, and answers bad
// input with 400 and what was wrong.
func TestUIImagesPagingAndSearch(t *testing.T) {
	ts := startUI(t, nil)
	for start := time.Now(); !strings.Contains(ts.logs.String(), "storage checked"); { // the repair on start must not judge half-seeded tags
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the repair on start did not finish:\n%s", ts.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	seedImages(t, ts.state, 45, 10)
	rebuild(t, ts.srv.imgIndex)
	b := newBrowser(t, ts)
	b.mustLogin()
	refRE := regexp.MustCompile(`data-ref="([^"]+)"`)
	refs := func(body string) []string {
		var out []string
		for _, m := range refRE.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	for _, c := range []struct {
		page              string
		first, last, text string
		n                 int
	}{
		{"/images", "fleet/repo0000:t00", "fleet/repo0019:t09", "45 repositories, 450 tag(s); page 1 of 3", 200},
		{"/images?page=2", "fleet/repo0020:t00", "fleet/repo0039:t09", `href="/images?page=3"`, 200},
		{"/images?page=3", "fleet/repo0040:t00", "fleet/repo0044:t09", `href="/images?page=2"`, 50},
		{"/images?page=7", "fleet/repo0040:t00", "fleet/repo0044:t09", "page 3 of 3", 50},
		{"/images?q=repo0044", "fleet/repo0044:t00", "fleet/repo0044:t09", "1 of 45 repositories match, 10 tag(s)", 10},
		{"/images?q=" + url.QueryEscape("repo000:T03"), "fleet/repo0000:t03", "fleet/repo0009:t03", "10 of 45 repositories match, 10 tag(s)", 10},
		{"/images?q=" + url.QueryEscape(":t05") + "&page=3", "fleet/repo0040:t05", "fleet/repo0044:t05", `href="/images?page=2&amp;q=%3At05"`, 5},
		{"/images?q=nothing", "", "", "No image matches <code>nothing</code>", 0},
	} {
		resp, body := b.get(c.page)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200; error %q", c.page, resp.StatusCode, pageError(body))
			continue
		}
		got := refs(body)
		if len(got) != c.n || (c.n > 0 && (got[0] != c.first || got[len(got)-1] != c.last)) || !strings.Contains(body, c.text) {
			t.Errorf("GET %s: %d tags %v … %v, want %d from %s to %s, and the page saying %q:\n%s", c.page, len(got), first(got), last(got), c.n, c.first, c.last, c.text, body)
		}
	}
	for _, c := range []struct{ page, want string }{
		{"/images?page=abc", `invalid page "abc"`},
		{"/images?page=0", `invalid page "0"`},
		{"/images?page=-1", `invalid page "-1"`},
		{"/images?q=" + url.QueryEscape("a b"), "a repository name holds only"},
		{"/images?q=" + url.QueryEscape("app:v1:v2"), "a tag holds only"},
		{"/images?q=" + strings.Repeat("a", 400), "at most 384"},
	} {
		resp, body := b.get(c.page)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(pageError(body), c.want) {
			t.Errorf("GET %s: %d, error %q; want 400 saying %q", c.page, resp.StatusCode, pageError(body), c.want)
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// TestImageIndexLongRebuildNoWait: when the index's last build took longer
// than a view would wait for the next (a large registry on a bucket), a
// view of a stale index starts the rebuild and answers from the index it
// has, saying it is refreshing, instead of waiting for a build that will
// not land in time: a view whose deadline is shorter than the wait gets
// its page, not the deadline's error.
func TestImageIndexLongRebuildNoWait(t *testing.T) {
	ts := startServer(t, nil)
	ts.push(t, "app:v1", ociImage(t, 1024, 1))
	x := ts.srv.imgIndex
	if got := indexRefs(t, x); !slices.Equal(got, []string{"app:v1"}) {
		t.Fatalf("index lists %q", got)
	}
	release := make(chan struct{})
	defer close(release)
	open := x.open
	x.mu.Lock()
	x.open = func(ctx context.Context) (distribution.Namespace, storagedriver.StorageDriver, error) {
		<-release // a rebuild that takes as long as the test
		return open(ctx)
	}
	x.took = 2 * imageIndexStaleWait
	x.built = x.now().Add(-time.Hour)
	x.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), imageIndexStaleWait*3/4)
	defer cancel()
	snap, err := x.view(ctx)
	if err != nil {
		t.Fatalf("a view of a stale index whose rebuild takes long: %v", err)
	}
	if !snap.Refreshing || len(snap.Repos) != 1 || snap.Repos[0].Name != "app" {
		t.Fatalf("view: refreshing %v, %d repositories; want the index there is, refreshing", snap.Refreshing, len(snap.Repos))
	}
}
