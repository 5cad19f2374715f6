package agent

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// On Windows, file modes set no ACL: %ProgramData%\edgecr would inherit
// %ProgramData%'s, which lets every local user read files (BUILTIN\Users
// RX) and create files in subdirectories. The state directory gets its own
// protected DACL: SYSTEM and Administrators full control, Users read (so
// that `edgecr status` works unelevated); the pending-secrets file gets a
// protected DACL of SYSTEM and Administrators only, set on the temporary
// file before the secret is written into it (a rename keeps it).
const (
	stateDirSDDL   = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"
	secretFileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
)

// protectStateDir gives the state directory its protected DACL.
func protectStateDir(dir string) error { return setDACL(dir, stateDirSDDL) }

// protectSecretFile gives a file that will hold secrets its protected DACL.
func protectSecretFile(path string) error { return setDACL(path, secretFileSDDL) }

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
