package kv_test

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/edgecr/edgecr/server/kv"
)

func TestParseS3URL(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   kv.S3Location
		params map[string]any
	}{
		{
			in:   "s3://my-bucket?endpoint=http://127.0.0.1:9000&region=us-east-1",
			want: kv.S3Location{Bucket: "my-bucket", Endpoint: "http://127.0.0.1:9000", Region: "us-east-1"},
			params: map[string]any{"bucket": "my-bucket", "region": "us-east-1", "regionendpoint": "http://127.0.0.1:9000",
				"forcepathstyle": true, "secure": false, "v4auth": true},
		},
		{
			in:   "S3://my.bucket.1/site/edge%2Ba/?endpoint=https://minio.example:443/",
			want: kv.S3Location{Bucket: "my.bucket.1", Prefix: "site/edge+a", Endpoint: "https://minio.example:443", Region: "us-east-1"},
			params: map[string]any{"bucket": "my.bucket.1", "region": "us-east-1", "regionendpoint": "https://minio.example:443",
				"forcepathstyle": true, "secure": true, "v4auth": true, "rootdirectory": "/site/edge+a"},
		},
		{
			in:     "s3://b12?region=eu-west-1",
			want:   kv.S3Location{Bucket: "b12", Region: "eu-west-1"},
			params: map[string]any{"bucket": "b12", "region": "eu-west-1", "forcepathstyle": true, "secure": true, "v4auth": true},
		},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := kv.ParseS3URL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if *got != tc.want {
				t.Fatalf("ParseS3URL = %+v, want %+v", *got, tc.want)
			}
			if p := got.DriverParameters(); !reflect.DeepEqual(p, tc.params) {
				t.Fatalf("DriverParameters = %v, want %v", p, tc.params)
			}
			if st := got.Storage(); st.Type() != "s3" || !reflect.DeepEqual(map[string]any(st["redirect"]), kv.RedirectDisabled) {
				t.Fatalf("Storage() = %v: want type s3 and redirects disabled", st)
			}
			again, err := kv.ParseS3URL(got.String())
			if err != nil || *again != *got {
				t.Fatalf("String() %q parses to %+v, %v", got.String(), again, err)
			}
			kc := got.KVConfig()
			if kc.Bucket != tc.want.Bucket || kc.Endpoint != tc.want.Endpoint || kc.Region != tc.want.Region ||
				kc.KeyPrefix != strings.TrimPrefix(tc.want.Prefix+"/edgecr/state/", "/") {
				t.Fatalf("KVConfig = %+v", kc)
			}
		})
	}
}

const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"

func TestParseS3URLErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"s4://bucket?region=us-east-1", `unsupported scheme "s4" (did you mean s3?)`},
		{"s3a://bucket?region=us-east-1", `unsupported scheme "s3a" (did you mean s3?)`},
		{"file:///var/lib/edgecr", `unsupported scheme "file", want s3://`},
		{"my-bucket", "no scheme"},
		{"s3://?region=us-east-1", "no bucket"},
		{"s3:///prefix?region=us-east-1", "no bucket"},
		{"s3://My_Bucket?region=us-east-1", `bucket name "My_Bucket": character 'M'`},
		{"s3://ab?region=us-east-1", `bucket name "ab": 2 characters, want 3 to 63`},
		{"s3://" + strings.Repeat("b", 64) + "?region=us-east-1", "64 characters"},
		{"s3://-bucket?region=us-east-1", "start and end with a letter or digit"},
		{"s3://a..b?region=us-east-1", "no .. .- or -."},
		{"s3://192.168.1.10?region=us-east-1", "must not be an IP address"},
		{"s3://xn--bucket?region=us-east-1", "reserved"},
		{"s3://bucket?endpont=http://127.0.0.1:9000", `unknown parameter "endpont" (did you mean endpoint?); known: endpoint, region`},
		{"s3://bucket?endpoint=http://h&regoin=eu-west-1", `unknown parameter "regoin" (did you mean region?)`},
		{"s3://bucket?endpoint=http://h&colour=blue", `unknown parameter "colour"; known: endpoint, region`},
		{"s3://bucket?endpoint=ftp://h", `endpoint scheme "ftp": want http or https`},
		{"s3://bucket?endpoint=htps://h", `endpoint scheme "htps" (did you mean https?)`},
		{"s3://bucket?endpoint=127.0.0.1:9000", "endpoint is not a URL"},
		{"s3://bucket?endpoint=minio:9000", "endpoint has no http:// or https:// scheme"},
		{"s3://bucket?endpoint=", "endpoint is empty"},
		{"s3://bucket?endpoint=http://:9000", "has no host"},
		{"s3://bucket?endpoint=http://h/minio", "no path or query"},
		{"s3://bucket?endpoint=http://h:0", `bad port "0"`},
		{"s3://bucket?endpoint=http://h&endpoint=http://g", "parameter endpoint given 2 times"},
		{"s3://bucket", "no region (needed without an endpoint, for AWS)"},
		{"s3://bucket?region=us%20east", `region "us east"`},
		{"s3://bucket/a//b?region=us-east-1", `prefix "a//b"`},
		{"s3://bucket/../b?region=us-east-1", `prefix "../b"`},
		{"s3://bucket/my%20site?region=us-east-1", `prefix "my site": segments must be non-empty, not . or .., without control characters, space or !`},
		{"s3://bucket/a%zz?region=us-east-1", "bad % escape"},
		{"s3://bucket?region=us-east-1#x", "fragment"},
		{"s3://bucket?region=us-east-1&a=%zz", "the query is not name=value"},
		// Secrets: refused without being repeated.
		{"s3://AKIAEXAMPLE:" + secret + "@bucket?region=us-east-1", "user info (@) is not allowed: credentials come from AWS_ACCESS_KEY_ID"},
		{"s3://bucket?endpoint=http://AKIAEXAMPLE:" + secret + "@h:9000", "endpoint has user info (@)"},
		{"s3://bucket?region=us-east-1&secretkey=" + secret, `parameter "secretkey" is not accepted: credentials come from`},
		{"s3://bucket?region=us-east-1&AWS_SECRET_ACCESS_KEY=" + secret, `parameter "AWS_SECRET_ACCESS_KEY" is not accepted`},
		{"s3://bucket?region=us-east-1&secret=" + secret, `unknown parameter "secret"`},
		{"s3://bucket?region=us-east-1&" + secret + "=x", `unknown parameter "(39 characters, not shown)"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := kv.ParseS3URL(tc.in)
			if err == nil {
				t.Fatalf("ParseS3URL accepted it: %+v", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q repeats the secret", err)
			}
		})
	}
}

func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{
		"s3://my-bucket?endpoint=http://127.0.0.1:9000&region=us-east-1",
		"s3://my.bucket/site/a%20b/?endpoint=https://minio.example",
		"s3://AKIA:" + secret + "@bucket?region=us-east-1",
		"s3://bucket?region=us-east-1&secretkey=" + secret,
		"s3://bucket?endpoint=http://u:" + secret + "@h",
		"s4://bucket", "s3://b?endpont=x", "s3:///", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := kv.ParseS3URL(raw)
		if err != nil {
			// Values of parameters other than endpoint and region, and the
			// password of any user info, are never repeated.
			_, query, _ := strings.Cut(raw, "?")
			if q, qerr := url.ParseQuery(query); qerr == nil {
				for k, vs := range q {
					if k == "endpoint" || k == "region" {
						continue
					}
					for _, v := range vs {
						if len(v) >= 8 && strings.Contains(err.Error(), v) {
							t.Fatalf("error %q repeats the value of %q", err, k)
						}
					}
				}
			}
			if at := strings.LastIndex(raw, "@"); at > 0 {
				if c := strings.LastIndex(raw[:at], ":"); c >= 0 && at-c > 8 && strings.Contains(err.Error(), raw[c+1:at]) {
					t.Fatalf("error %q repeats a password", err)
				}
			}
			return
		}
		if loc.Bucket == "" || loc.Region == "" {
			t.Fatalf("accepted %q without bucket or region: %+v", raw, loc)
		}
		again, err := kv.ParseS3URL(loc.String())
		if err != nil || *again != *loc {
			t.Fatalf("%q: String() %q parses to %+v, %v; want %+v", raw, loc.String(), again, err, loc)
		}
		if p := loc.DriverParameters(); p["forcepathstyle"] != true || p["bucket"] != loc.Bucket {
			t.Fatalf("DriverParameters = %v", p)
		}
	})
}
