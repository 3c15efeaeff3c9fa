package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kanade-fleet/backend"
)

// Accounts (control.md §9.3; table users in migrations/0006_accounts.sql).
//
// The password hash is read by Credentials alone: every other read returns
// kanade.Account, which has no field for it. The last-admin guard lives
// inside the statements that could break it (a NOT (...) predicate that
// counts the enabled admins), so the count and the write are one statement
// and two requests, or two processes, cannot each remove "the other" admin.

// ErrExists is CreateAccount's error for a username that is taken.
var ErrExists = errors.New("already exists")

// ErrLastAdmin is the error of a change that would leave no enabled admin.
var ErrLastAdmin = errors.New("would leave no enabled admin")

const accountColumns = `username, role, disabled, must_change_pw, created_at, updated_at`

// lastAdminGuard is true for a row that is the only enabled admin: such a
// row may not be deleted, disabled or demoted.
const lastAdminGuard = `(role = 'admin' AND disabled = 0
	AND (SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0) <= 1)`

// Credentials is what a password check needs: the account and its hash.
type Credentials struct {
	Account kanade.Account
	Hash    string
}

// NewAccount is an account to create.
type NewAccount struct {
	Username string
	// Hash is the encoded password hash (auth/password).
	Hash               string
	Role               string
	MustChangePassword bool
}

// AccountChange is a partial update: nil fields stay as they are.
type AccountChange struct {
	Role     *string
	Disabled *bool
	// Hash replaces the password hash.
	Hash               *string
	MustChangePassword *bool
}

type rowScanner interface{ Scan(dest ...any) error }

func scanAccount(row rowScanner, extra ...any) (kanade.Account, error) {
	var a kanade.Account
	var disabled, mustChange int64
	dest := append([]any{&a.Username, &a.Role, &disabled, &mustChange, &a.CreatedAt, &a.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return kanade.Account{}, err
	}
	a.Disabled, a.MustChangePassword = disabled != 0, mustChange != 0
	return a, nil
}

// AccountAccess returns what an account may do: its role and whether it is
// disabled, or ErrNotFound. The auth middleware calls it for every request
// that carries a JWT (the table, not the token, says what the caller may
// do), so it reads the two columns it needs by primary key and nothing
// else: about a quarter cheaper than Account.
func (db *DB) AccountAccess(ctx context.Context, username string) (role string, disabled bool, err error) {
	var d int64
	err = db.read.QueryRowContext(ctx, `SELECT role, disabled FROM users WHERE username = ?`, username).Scan(&role, &d)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, fmt.Errorf("account %q: %w", kanade.Clip(username), ErrNotFound)
	}
	if err != nil {
		return "", false, fmt.Errorf("account %q: %w", kanade.Clip(username), err)
	}
	return role, d != 0, nil
}

// Account returns one account, or ErrNotFound.
func (db *DB) Account(ctx context.Context, username string) (kanade.Account, error) {
	a, err := scanAccount(db.read.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM users WHERE username = ?`, username))
	if errors.Is(err, sql.ErrNoRows) {
		return kanade.Account{}, fmt.Errorf("account %q: %w", kanade.Clip(username), ErrNotFound)
	}
	if err != nil {
		return kanade.Account{}, fmt.Errorf("account %q: %w", kanade.Clip(username), err)
	}
	return a, nil
}

// Credentials returns an account with its password hash, or ErrNotFound.
// Only the password checks (login, change of one's own password) call it.
func (db *DB) Credentials(ctx context.Context, username string) (Credentials, error) {
	var c Credentials
	var err error
	c.Account, err = scanAccount(db.read.QueryRowContext(ctx,
		`SELECT `+accountColumns+`, password_hash FROM users WHERE username = ?`, username), &c.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return Credentials{}, fmt.Errorf("credentials of %q: %w", kanade.Clip(username), ErrNotFound)
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials of %q: %w", kanade.Clip(username), err)
	}
	return c, nil
}

// ListAccounts returns every account by username. Accounts are people, so
// the list is short and not paginated.
func (db *DB) ListAccounts(ctx context.Context) ([]kanade.Account, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+accountColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	out := []kanade.Account{}
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("list accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// HasAccounts reports whether any account exists, so the bootstrap admin
// is hashed only on a fresh database.
func (db *DB) HasAccounts(ctx context.Context) (bool, error) {
	var n int64
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1)`).Scan(&n); err != nil {
		return false, fmt.Errorf("count accounts: %w", err)
	}
	return n > 0, nil
}

// CreateAccount inserts a, stamped with the database clock, and returns it;
// ErrExists when the username is taken.
func (db *DB) CreateAccount(ctx context.Context, a NewAccount) (kanade.Account, error) {
	var out kanade.Account
	err := db.Update(ctx, func(tx *Tx) error {
		now := kanade.FormatTime(tx.now)
		res, err := tx.Exec(ctx, `INSERT INTO users (username, password_hash, role, disabled, must_change_pw, created_at, updated_at)
			VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (username) DO NOTHING`,
			a.Username, a.Hash, a.Role, boolInt(a.MustChangePassword), now, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		out, err = scanAccount(tx.tx.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM users WHERE username = ?`, a.Username))
		return err
	})
	if err != nil {
		return kanade.Account{}, fmt.Errorf("create account %q: %w", kanade.Clip(a.Username), err)
	}
	return out, nil
}

// CreateFirstAdmin inserts an admin who must change the password, but only
// into an empty table, in one statement: two processes starting at once on
// a fresh database create one admin, and a restart with the variables still
// set creates nothing. created reports whether this call inserted it.
func (db *DB) CreateFirstAdmin(ctx context.Context, username, hash string) (created bool, err error) {
	err = db.Update(ctx, func(tx *Tx) error {
		now := kanade.FormatTime(tx.now)
		res, err := tx.Exec(ctx, `INSERT INTO users (username, password_hash, role, disabled, must_change_pw, created_at, updated_at)
			SELECT ?, ?, 'admin', 0, 1, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)`,
			username, hash, now, now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		created = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("create bootstrap admin %q: %w", kanade.Clip(username), err)
	}
	return created, nil
}

// UpdateAccount applies c to the account and returns it: ErrNotFound when
// there is none, ErrLastAdmin (and no change at all) when c would disable
// or demote the only enabled admin.
func (db *DB) UpdateAccount(ctx context.Context, username string, c AccountChange) (kanade.Account, error) {
	var out kanade.Account
	err := db.Update(ctx, func(tx *Tx) error {
		var disabled, mustChange any // NULL: unchanged
		if c.Disabled != nil {
			disabled = boolInt(*c.Disabled)
		}
		if c.MustChangePassword != nil {
			mustChange = boolInt(*c.MustChangePassword)
		}
		// One statement: the new values and the guard see the same rows.
		res, err := tx.Exec(ctx, `UPDATE users SET
				role = COALESCE(?, role),
				disabled = COALESCE(?, disabled),
				password_hash = COALESCE(?, password_hash),
				must_change_pw = COALESCE(?, must_change_pw),
				updated_at = ?
			WHERE username = ? AND NOT (`+lastAdminGuard+`
				AND (COALESCE(?, role) <> 'admin' OR COALESCE(?, disabled) = 1))`,
			c.Role, disabled, c.Hash, mustChange, kanade.FormatTime(tx.now), username, c.Role, disabled)
		if err != nil {
			return err
		}
		if err := tx.guarded(ctx, res, username); err != nil {
			return err
		}
		out, err = scanAccount(tx.tx.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM users WHERE username = ?`, username))
		return err
	})
	if err != nil {
		return kanade.Account{}, fmt.Errorf("update account %q: %w", kanade.Clip(username), err)
	}
	return out, nil
}

// DeleteAccount deletes the account: ErrNotFound when there is none,
// ErrLastAdmin when it is the only enabled admin.
func (db *DB) DeleteAccount(ctx context.Context, username string) error {
	err := db.Update(ctx, func(tx *Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM users WHERE username = ? AND NOT `+lastAdminGuard, username)
		if err != nil {
			return err
		}
		return tx.guarded(ctx, res, username)
	})
	if err != nil {
		return fmt.Errorf("delete account %q: %w", kanade.Clip(username), err)
	}
	return nil
}

// guarded turns a guarded statement that changed nothing into ErrNotFound
// (no such account) or ErrLastAdmin (the guard held it back).
func (tx *Tx) guarded(ctx context.Context, res sql.Result, username string) error {
	n, err := res.RowsAffected()
	if err != nil || n > 0 {
		return err
	}
	var exists int64
	if err := tx.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE username = ?`, username).Scan(&exists); err != nil {
		return err
	}
	if exists == 0 {
		return ErrNotFound
	}
	return ErrLastAdmin
}

// boolInt is b as the 0/1 the flag columns hold (both drivers agree on
// integers; not every one binds a Go bool).
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
