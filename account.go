package kanade

// Accounts (control.md §9.3): the people who log in to the dashboard and
// the API with a username and a password. The SQL lives in storage, the
// password hashing in auth/password, the role rules in auth; what they
// share is here.

// The role names, lowest first (control.md §9.1): a viewer reads, an
// operator also acts on the fleet, an admin also manages accounts.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// MaxUsernameBytes bounds a username.
const MaxUsernameBytes = 64

// RuleUsername is ValidUsername's rule as an error message says it.
const RuleUsername = "must be 1–64 characters of [A-Za-z0-9._@-]"

// ValidUsername reports whether s may name a new account: 1–64 bytes of
// letters, digits and . _ @ -, enough for "alice", "j.doe" or an e-mail
// address. The name becomes a JWT subject, the audit target and a log
// attribute, so it gets a plain alphabet rather than free text.
func ValidUsername(s string) bool {
	if s == "" || len(s) > MaxUsernameBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// Account is an account as the API shows it (GET /api/accounts, the
// answers of POST and PATCH). It has no password hash field on purpose:
// the hash never leaves storage except to be checked.
type Account struct {
	Username string `json:"username"`
	Role     string `json:"role" enum:"viewer,operator,admin"`
	// Disabled accounts cannot log in, and their tokens stop working at
	// once (control.md §9.1).
	Disabled bool `json:"disabled"`
	// MustChangePassword asks the dashboard to make the user choose a new
	// password; the bootstrap admin and every admin reset set it, a
	// change of one's own password clears it.
	MustChangePassword bool   `json:"must_change_pw" doc:"the password was set by someone else (bootstrap, admin reset); the user should change it"`
	CreatedAt          string `json:"created_at" format:"date-time"`
	UpdatedAt          string `json:"updated_at" format:"date-time"`
}
