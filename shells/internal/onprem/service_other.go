//go:build !windows

package onprem

import (
	"fmt"
	"io"

	"github.com/kanade-fleet/backend/shells/internal/app"
)

// RunAsService reports false: only Windows has a service manager that
// starts processes this way (systemd runs the shell as it is; see
// deploy/systemd).
func RunAsService(Service, app.RunFunc) (bool, error) { return false, nil }

// ServiceMain refuses the service subcommand away from Windows.
func ServiceMain(s Service, _ []string, _, _ io.Writer) error {
	return fmt.Errorf("service: Windows services exist only on Windows; on Linux install deploy/systemd/%s.service", s.Name)
}
