package credhelper

import (
	"bytes"
	"testing"
)

// Docker's config.json is the user's file: whatever Register accepts, it
// edits so that registering again changes nothing and Unregister gives
// back the very bytes it was given.
func FuzzRegisterUnregister(f *testing.F) {
	f.Add([]byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"eDp5"}},"credsStore":"desktop"}`), "ecr.box.internal:31001")
	f.Add([]byte("{\n\t\"credHelpers\": {\n\t\t\"gcr.io\": \"gcloud\"\n\t}\n}\n"), "https://ecr.box.internal:31001/v2/")
	f.Add([]byte(`  `), "h:1")
	f.Add([]byte(`{"credHelpers":null,"x":[1,{"y":"\u00e9"}]}`), "h:1")
	f.Fuzz(func(t *testing.T, config []byte, hostPort string) {
		out, ch, err := Register(config, hostPort, "edgecr", "secretservice")
		if err != nil {
			return
		}
		if _, err := parseDockerConfig(out); err != nil {
			t.Fatalf("Register wrote a config it cannot read: %v\n%s", err, out)
		}
		if !Applied(out, ch) {
			t.Fatalf("Applied is false right after Register:\n%s", out)
		}
		again, ch2, err := Register(out, hostPort, "edgecr", "secretservice")
		if err != nil || ch2.Changed() || !bytes.Equal(again, out) {
			t.Fatalf("registering again: %v, changed %v\n%s", err, ch2.Changed(), again)
		}
		back, err := Unregister(out, ch)
		if err != nil || !bytes.Equal(back, config) {
			t.Fatalf("Unregister: %v\ngave  %q\nwant %q", err, back, config)
		}
	})
}

// The credential file of docker-credential-edgecr: what decodes encodes
// and decodes to the same.
func FuzzDecodeCredFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"registries":{"ecr.box.internal:31001":{"username":"c-1","secret":"s"}}}`))
	f.Add([]byte(`{"version":99}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := decodeCredFile(data)
		if err != nil {
			return
		}
		enc := cf.encode()
		again, err := decodeCredFile(enc)
		if err != nil || !bytes.Equal(again.encode(), enc) {
			t.Fatalf("round trip: %v\n%s", err, enc)
		}
	})
}
