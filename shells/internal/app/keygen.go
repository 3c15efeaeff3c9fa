package app

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"time"

	"github.com/kanade-fleet/backend/sign"
)

// KeygenCommand is the subcommand that makes a command-signing key pair:
// `kanade keygen [-kid id]`.
const KeygenCommand = "keygen"

// IsKeygen reports whether args (program name first) ask for the keygen
// subcommand rather than a server.
func IsKeygen(args []string) bool { return len(args) > 1 && args[1] == KeygenCommand }

// keygenKid is what keygen accepts as a kid: the printed lines must work
// unquoted in a shell, a systemd EnvironmentFile and a .env file.
var keygenKid = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// Keygen is the keygen subcommand (args: the program name, "keygen", then
// flags): it makes a new Ed25519 key from random and prints, on stdout, the
// two settings that make a shell sign with it (KANADE_COMMAND_SIGNING_KEY,
// _KID) as an environment file, preceded by comments with what agents need:
// the public key as a key-ring entry, and the kid:fingerprint they will
// report. The kid defaults to backend-<YYYYMMDD> of now (UTC), so a rotated
// key gets an id of its own and both can sit on the agents' ring for the
// changeover.
//
// The private key is printed because environment variables are where it
// lives here (upstream writes it to the Windows registry instead): direct
// the output to a file only the service can read.
func Keygen(args []string, now time.Time, random io.Reader, stdout, stderr io.Writer) error {
	name := "kanade"
	if len(args) > 0 {
		name = filepath.Base(args[0])
	}
	fs := flag.NewFlagSet(name+" "+KeygenCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	kid := fs.String("kid", "backend-"+now.UTC().Format("20060102"),
		"the key id agents will know the key by (A-Z a-z 0-9 . _ - :); a rotation needs a new one")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s %s [-kid id] > kanade-signing.env\n\n"+
			"Prints a new Ed25519 command-signing key as the %s and %s settings,\n"+
			"with the public key agents need in comments.\n\n", name, KeygenCommand, envSigningKey, envSigningKid)
		fs.PrintDefaults()
	}
	var rest []string
	if len(args) > 2 {
		rest = args[2:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", KeygenCommand, fs.Arg(0))
	}
	if !keygenKid.MatchString(*kid) {
		return fmt.Errorf("%s: -kid %q: want 1 to 128 of the characters A-Z a-z 0-9 . _ - : (so the printed line needs no quoting)", KeygenCommand, *kid)
	}
	secret, err := sign.Generate(random)
	if err != nil {
		return fmt.Errorf("%s: %w", KeygenCommand, err)
	}
	s, err := sign.New(secret, *kid)
	if err != nil {
		return fmt.Errorf("%s: %w", KeygenCommand, err)
	}
	entry, err := json.Marshal(struct {
		Kid       string `json:"kid"`
		PublicKey string `json:"public_key"`
		Label     string `json:"label"`
	}{s.Kid(), s.PublicKey(), "backend"})
	if err != nil {
		return fmt.Errorf("%s: %w", KeygenCommand, err)
	}
	_, err = fmt.Fprintf(stdout, `# kanade command-signing key, made %s.
# %s is the private key: keep this file readable by the
# backend only (mode 0600); a flag would show it in ps.
#
# Give every agent the public key BEFORE the backend signs with it, in its
# CommandKeys ring (HKLM\SOFTWARE\kanade\agent\CommandKeys):
#   %s
# Agents that hold it report %s:%s in command_keys;
# GET /api/command-signing answers the same kid and fingerprint.
%s=%s
%s=%s
`, now.UTC().Format(time.RFC3339), envSigningKey, entry, s.Kid(), s.Fingerprint(),
		envSigningKey, secret, envSigningKid, s.Kid())
	return err
}
