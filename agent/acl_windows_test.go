package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

// dacl reads back the DACL of path as SDDL.
func dacl(t *testing.T, path string) string {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatalf("reading the ACL of %s: %v", path, err)
	}
	return sd.String()
}

// aces returns the ACEs of an SDDL string, "(A;OICI;FA;;;SY)" each.
func aces(sddl string) []string {
	var out []string
	for _, part := range strings.Split(sddl, "(")[1:] {
		out = append(out, "("+strings.TrimSuffix(part, ")")+")")
	}
	return out
}

// Issue 17, defect 6: the pending secret is readable by SYSTEM and
// Administrators only, the state directory does not inherit
// %ProgramData%'s ACL, and Users may read the state itself (edgecr status).
// Before the fix, both inherited BUILTIN\Users (RX) from the parent.
func TestStateACLWindows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "edgecr")
	f := NewStateFile(filepath.Join(dir, "state.json"))
	release, err := f.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	st := &State{}
	st.put(&Entry{Registry: "ecr.box.internal:31001", PendingSecret: "s3cret"})
	if err := f.Save(st); err != nil {
		t.Fatal(err)
	}

	d := dacl(t, dir)
	if !strings.HasPrefix(d, "D:P") {
		t.Errorf("state directory DACL %s is not protected", d)
	}
	for _, want := range []string{"(A;OICI;FA;;;SY)", "(A;OICI;FA;;;BA)", "(A;OICI;0x1200a9;;;BU)"} {
		if !strings.Contains(d, want) {
			t.Errorf("state directory DACL %s lacks %s", d, want)
		}
	}
	if n := len(aces(d)); n != 3 {
		t.Errorf("state directory DACL %s has %d ACEs, want 3", d, n)
	}

	s := dacl(t, f.SecretsPath())
	if !strings.HasPrefix(s, "D:P") {
		t.Errorf("secrets file DACL %s is not protected", s)
	}
	for _, a := range aces(s) {
		if !strings.HasSuffix(a, ";SY)") && !strings.HasSuffix(a, ";BA)") {
			t.Errorf("secrets file DACL %s grants %s", s, a)
		}
	}
	if len(aces(s)) == 0 {
		t.Errorf("secrets file DACL %s grants nobody", s)
	}
	// What was built parses back to the same descriptor.
	for _, sddl := range []string{stateDirSDDL, secretFileSDDL} {
		sd, err := windows.SecurityDescriptorFromString(sddl)
		if err != nil {
			t.Fatalf("%s: %v", sddl, err)
		}
		got := sd.String()
		if !strings.Contains(got, "D:P") || len(aces(got)) != len(aces(sddl)) {
			t.Errorf("SDDL round trip: %s, want %s", got, sddl)
		}
		for _, a := range aces(sddl) {
			if !strings.Contains(got, a) {
				t.Errorf("SDDL round trip: %s lacks %s", got, a)
			}
		}
	}
	if b, err := os.ReadFile(f.SecretsPath()); err != nil || !strings.Contains(string(b), "s3cret") {
		t.Errorf("secrets file: %q, %v", b, err)
	}
}
