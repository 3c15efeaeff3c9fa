//go:build !unix

package httpload

import "syscall"

// smallReceiveBuffer is a no-op where the socket option is not portable; the
// hang-up check then resets later in the response.
func smallReceiveBuffer(_, _ string, _ syscall.RawConn) error { return nil }
