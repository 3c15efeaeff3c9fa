package app

import (
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/auth"
)

// Auth is the authentication a shell runs with.
type Auth struct {
	Config auth.Config
	// Generated is the token kept in the data folder when neither a static
	// token nor a JWT secret is configured (api.md, authentication item 6);
	// empty otherwise.
	Generated string
	// Created says the token was generated on this start.
	Created bool
}

// SetupAuth turns the configuration into auth.Config. With nothing configured
// and auth not disabled, it loads the token kept in the data folder, creating
// it on the first start, so a fresh install is secure without a
// hard-coded secret.
func SetupAuth(cfg Config, logger *slog.Logger) (Auth, error) {
	a := Auth{Config: auth.Config{
		Disabled:    cfg.AuthDisabled,
		StaticToken: cfg.AuthStaticToken,
		JWTSecret:   []byte(cfg.JWTSecret),
		Clock:       kanade.SystemClock,
		Logger:      logger,
	}}
	if cfg.JWTSecret == "" {
		a.Config.JWTSecret = nil
	}
	// With auth disabled, auth.Middleware logs the loud warning itself.
	if !cfg.AuthDisabled && cfg.AuthStaticToken == "" && cfg.JWTSecret == "" {
		if cfg.DataDir == "" {
			return Auth{}, fmt.Errorf("authentication: no KANADE_AUTH_STATIC_TOKEN, KANADE_JWT_SECRET or data folder to keep a generated token in")
		}
		token, created, err := auth.LoadOrCreateToken(cfg.DataDir)
		if err != nil {
			return Auth{}, fmt.Errorf("authentication: token in %s: %w", cfg.DataDir, err)
		}
		a.Config.StaticToken = token
		a.Generated, a.Created = token, created
	}
	return a, nil
}

// PrintDashboard writes where the server listens and the dashboard address
// to w (stdout). With a generated token the address carries it in the URL
// fragment (#token=…), which the SPA reads and which browsers never send to
// the server, so it stays out of access logs. The log line names the
// address without the token: logs travel further than a terminal.
func PrintDashboard(w io.Writer, logger *slog.Logger, addr net.Addr, a Auth) {
	base := "http://" + dialable(addr) + "/"
	fmt.Fprintf(w, "kanade: listening on %s\n", base)
	switch {
	case a.Generated != "":
		state := "kept in the data folder"
		if a.Created {
			state = "new, saved in the data folder"
		}
		fmt.Fprintf(w, "kanade: dashboard %s#token=%s (token %s)\n", base, a.Generated, state)
		logger.Info("dashboard", slog.String("url", base+"#token=REDACTED"),
			slog.Bool("token_created", a.Created), slog.String("token", "printed on stdout"))
	default:
		fmt.Fprintf(w, "kanade: dashboard %s\n", base)
		logger.Info("dashboard", slog.String("url", base))
	}
}

// dialable turns a listener address into one a browser can open: an
// unspecified host (0.0.0.0, ::) becomes the loopback address.
func dialable(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
