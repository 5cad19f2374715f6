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
