package auth

import (
	"context"
	"errors"

	"github.com/kanade-fleet/backend"
)

// Role is what a caller may do (control.md §9.1), ordered so that a higher
// role may do everything a lower one may: Viewer < Operator < Admin.
//
// As the requirement of a route, NoRole means public: anyone, even without
// credentials. As a caller's role it means no authenticated identity.
type Role uint8

// The roles, lowest first.
const (
	NoRole Role = iota
	Viewer
	Operator
	Admin
)

// String is the role's name as the API and the JWT "roles" claim spell it
// ("none" for NoRole).
func (r Role) String() string {
	switch r {
	case Viewer:
		return kanade.RoleViewer
	case Operator:
		return kanade.RoleOperator
	case Admin:
		return kanade.RoleAdmin
	}
	return "none"
}

// ParseRole reads a role name; only "viewer", "operator" and "admin" are
// roles.
func ParseRole(s string) (Role, bool) {
	switch s {
	case kanade.RoleViewer:
		return Viewer, true
	case kanade.RoleOperator:
		return Operator, true
	case kanade.RoleAdmin:
		return Admin, true
	}
	return NoRole, false
}

// HighestRole is the effective role of a JWT "roles" claim without an
// account (control.md §9.1): the highest name that parses, Viewer when none
// does.
func HighestRole(names []string) Role {
	best := Viewer
	for _, n := range names {
		if r, ok := ParseRole(n); ok && r > best {
			best = r
		}
	}
	return best
}

// Allows reports whether c may call a route that requires need.
func (c Caller) Allows(need Role) bool { return c.Role >= need }

// Forbidden is the problem detail of a caller below a route's role, the
// sentence of control.md §9.2: "operator role required (caller is
// viewer)", or "no authenticated identity" when the caller has none.
func Forbidden(need Role, c Caller) string {
	if c.Role == NoRole {
		return "no authenticated identity"
	}
	return need.String() + " role required (caller is " + c.Role.String() + ")"
}

// Account is what the middleware needs to know of a JWT's subject, read
// from the accounts table on every request: the table, not the token, is
// authoritative (control.md §9.1), so a role change or a disable takes
// effect at once rather than when the token expires.
type Account struct {
	Role     Role
	Disabled bool
}

// ErrNoAccount is what an AccountLookup returns (wrapped or not) when the
// subject has no account.
var ErrNoAccount = errors.New("no such account")

// AccountLookup finds the account a JWT names. It returns ErrNoAccount when
// there is none; any other error means the accounts could not be read, and
// the request is refused (fail closed).
type AccountLookup func(ctx context.Context, username string) (Account, error)
