package hostsfile

import "testing"

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"linux", nil, "/etc/hosts"},
		{"darwin", nil, "/etc/hosts"},
		{"freebsd", nil, "/etc/hosts"},
		{"linux", map[string]string{"SystemRoot": `D:\Win`}, "/etc/hosts"},
		{"windows", map[string]string{"SystemRoot": `C:\Windows`}, `C:\Windows\System32\drivers\etc\hosts`},
		{"windows", map[string]string{"SystemRoot": `D:\WINNT\`}, `D:\WINNT\System32\drivers\etc\hosts`},
		{"windows", nil, `C:\Windows\System32\drivers\etc\hosts`},
	}
	for _, tt := range tests {
		env := func(k string) string { return tt.env[k] }
		if got := DefaultPath(tt.goos, env); got != tt.want {
			t.Errorf("DefaultPath(%q, %v) = %q, want %q", tt.goos, tt.env, got, tt.want)
		}
	}
}
