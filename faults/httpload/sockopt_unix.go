//go:build unix

package httpload

import "syscall"

// smallReceiveBuffer shrinks the client's receive buffer (and so its TCP
// window) before connecting, so a server response cannot land whole in it.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
