package hostsfile

import "golang.org/x/sys/windows"

// renameBlockedErrs are the errors of a rename onto a file another process
// holds open.
var renameBlockedErrs = []error{windows.ERROR_ACCESS_DENIED, windows.ERROR_SHARING_VIOLATION}
