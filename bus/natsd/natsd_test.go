package natsd_test

import (
	"net"
	"strings"
	"testing"

	"github.com/kanade-fleet/backend/bus/natsd"
)

func TestEmbeddedReportsATakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := natsd.Start(natsd.Options{StoreDir: t.TempDir(), Listen: ln.Addr().String()})
	if err == nil {
		s.Shutdown()
		t.Fatal("started on a taken port")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error = %v, want it to say the address is in use", err)
	}
}
