package credhelper

import (
	"errors"
	"slices"
	"testing"
)

func TestForeign(t *testing.T) {
	const hp = "ecr.box.internal:31001"
	for _, c := range []struct {
		name, config string
		want         []string
	}{
		{"blank", "", nil},
		{"empty", "{}", nil},
		{"ours", `{"credHelpers":{"ecr.box.internal:31001":"edgecr"}}`, nil},
		{"other host", `{"credHelpers":{"ghcr.io":"gh"},"auths":{"docker.io":{}}}`, nil},
		{"other helper", `{"credHelpers":{"ecr.box.internal:31001":"ecr-login"}}`, []string{`credHelpers["ecr.box.internal:31001"] = "ecr-login"`}},
		{"login", `{"auths":{"https://ECR.box.internal:31001/v2/":{"auth":"eDp5"}}}`, []string{`auths["https://ECR.box.internal:31001/v2/"] (a docker login)`}},
		{"both", `{"auths":{"ecr.box.internal:31001":{}},"credHelpers":{"ecr.box.internal:31001":"pass"}}`,
			[]string{`auths["ecr.box.internal:31001"] (a docker login)`, `credHelpers["ecr.box.internal:31001"] = "pass"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Foreign([]byte(c.config), hp, "edgecr")
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("Foreign = %q, %v; want %q", got, err, c.want)
			}
		})
	}
	if _, err := Foreign([]byte(`{"credHelpers":[]}`), hp, "edgecr"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("malformed: %v", err)
	}
}

// Foreign never panics, and whatever it reports is in a config Register
// accepts, for the key Register would set.
func FuzzForeign(f *testing.F) {
	f.Add(`{"credHelpers":{"ecr.box.internal:31001":"ecr-login"},"auths":{"https://ecr.box.internal:31001":{}}}`, "ecr.box.internal:31001")
	f.Add(`{"auths":null}`, "h:1")
	f.Fuzz(func(t *testing.T, config, hostPort string) {
		found, err := Foreign([]byte(config), hostPort, "edgecr")
		if err != nil || len(found) == 0 {
			return
		}
		if _, _, err := Register([]byte(config), hostPort, "edgecr", ""); err != nil {
			t.Fatalf("Foreign found %q in a config Register refuses: %v", found, err)
		}
	})
}
