package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows, file modes set no ACL: %ProgramData%\edgecr would inherit
// %ProgramData%'s, which lets every local user read files (BUILTIN\Users
// RX) and create files in subdirectories. The state directory gets its own
// protected DACL: SYSTEM and Administrators full control, Users read (so
// that `edgecr status` works unelevated); the pending-secrets file gets a
// protected DACL of SYSTEM and Administrators only, set on the temporary
// file when it is created (CreateFile with that security descriptor, no
// sharing), so that no other user can open it before or after the secret
// is in it; a rename keeps it.
const (
	stateDirSDDL   = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"
	secretFileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
)

// protectStateDir gives the state directory its protected DACL.
func protectStateDir(dir string) error { return setDACL(dir, stateDirSDDL) }

// createSecretTemp is os.CreateTemp for a file that will hold secrets: it is
// created with the protected DACL of secretFileSDDL, and not shared while
// it is open.
func createSecretTemp(dir, pattern string) (*os.File, error) {
	sd, err := windows.SecurityDescriptorFromString(secretFileSDDL)
	if err != nil {
		return nil, fmt.Errorf("parsing the security descriptor %s: %w", secretFileSDDL, err)
	}
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
	prefix, suffix, _ := strings.Cut(pattern, "*")
	for range 100 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:])+suffix)
		p, err := windows.UTF16PtrFromString(name)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", name, err)
		}
		h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, sa,
			windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
		if errors.Is(err, windows.ERROR_FILE_EXISTS) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", name, err)
		}
		return os.NewFile(uintptr(h), name), nil
	}
	return nil, fmt.Errorf("creating a temporary file in %s: too many names taken", dir)
}

func setDACL(path, sddl string) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("parsing the security descriptor %s: %w", sddl, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("reading the DACL of %s: %w", sddl, err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("setting the access control list of %s: %w", path, err)
	}
	return nil
}
