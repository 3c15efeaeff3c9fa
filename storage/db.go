// Package storage is the SQL read model: the schema and its migrations, the
// projection's write path and the queries the HTTP handlers read. It speaks one
// SQL dialect (SQLite 3.45) to two backends: a local SQLite file through the
// pure-Go modernc driver, or a remote libSQL server (sqld, Turso). The read
// queries return the root package's read shapes (kanade.Agent, kanade.Page,
// …), which handlers serves as they are; files are named after what they
// hold (reads.go, scan_durations.go, dispatch_state.go for the scheduler's
// state), and tests open databases through storagetest.
//
// Every timestamp is bound as kanade.TimeLayout text computed in Go from an
// injected clock; nothing here calls CURRENT_TIMESTAMP or julianday.
package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kanade-fleet/backend"

	_ "github.com/tursodatabase/libsql-client-go/libsql" // registers "libsql"
)

//go:embed migrations/*.sql
var migrations embed.FS

// sqlitePragmas are the connection settings every SQLite connection gets. WAL
// lets readers run beside the writer; _txlock=immediate takes the write lock at
// BEGIN, so two writers queue on busy_timeout instead of failing with
// "database is locked" when a read transaction tries to upgrade.
//
// busy_timeout comes first: the driver runs the pragmas in order when it
// opens a connection, and journal_mode reads the database, which under a
// busy writer can meet a lock; run before busy_timeout it failed at once
// with SQLITE_BUSY, and the connection with it (the checkpointer's, once,
// which then never ran: TestWALStaysBoundedUnderAWriterThatNeverPauses).
const sqlitePragmas = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"

// writerPragmas are added for the single writer connection only. A batch
// transaction touches thousands of pages (random result_id keys spread over
// seven indexes); with SQLite's default 2 MiB cache it spills dirty pages to
// the WAL mid-transaction and reads them back, which profiling showed as a
// quarter of the projector's time. 64 MiB is paid once, by one connection;
// the readers keep the default.
//
// The WAL is copied back into the database by the checkpointer
// (checkpointLoop) beside the writer, not by the writer's commits: a commit
// that crossed wal_autocheckpoint copied the whole WAL (32 MiB at 8192
// pages) and synced the file before returning, and on a busy machine the
// projector's next batch waited a second or more behind the retention
// delete that happened to cross it. The writer's own checkpoint stays as a
// backstop for a checkpointer that cannot keep up (walAutocheckpoint).
const writerPragmas = "&_pragma=cache_size(-65536)"

// walAutocheckpoint is the WAL size (in pages) at which the writer's own
// commit checkpoints: the backstop, 256 MiB. It must lie beyond twice
// walRestartFrames, where the checkpointer starts the WAL over whatever the
// readers pinned. It was 32768, exactly that point: with readers pinning
// frames the WAL reached it before the checkpointer's turn (34,330 frames
// were seen), and the commit that crossed it copied and synced up to
// 128 MiB while the projector's batches waited.
const walAutocheckpoint = 4 * walRestartFrames

// checkpointEvery is how often the checkpointer copies the WAL back. A
// busy projector writes a few MiB of WAL a second, so a checkpoint copies
// about that, while the writer goes on.
const checkpointEvery = time.Second

// readerPragmas are added for the read pool: they map the file (its first
// 2 GiB, the most this SQLite build maps: 0x7fff0000 bytes). A page read
// through the map is neither copied by a pread nor given a page of the
// connection's cache. scan_durations at 1M runs right after the 0.43.56 row
// pull read the same file: 118 ms without the map, 52 ms with it (35 ms
// warm either way).
//
// The page cache keeps SQLite's default (2 MB) on purpose. SQLite empties a
// connection's whole cache when its next read finds that another connection
// has committed, which under a running projector is nearly every read. Each
// cached page is a malloc of modernc's allocator, whose freed pages go back
// to the kernel, so a large cache made every read after a commit free what
// the last one filled and fault fresh memory in again, page by page. With
// 32 MB per connection (this pragma until 2026-12-05), reads that follow a
// commit, measured on the files of bench/scale and bench/inventory:
// scan_durations at 10M runs 117 ms, against 45 ms with the default; the
// inventory search name__contains=chrome at 3M rows 179 ms, against 79 ms.
// The large cache only paid when nothing was written between two reads (the
// search 22 ms against 29 ms), which is not a running fleet.
const readerPragmas = "&_pragma=mmap_size(2147418112)"

// DB is the read model. Writes go through a single connection (SQLite allows
// one writer at a time; queuing in Go is cheaper than busy-waiting in SQLite),
// reads through a pool.
type DB struct {
	write *sql.DB
	read  *sql.DB
	// rollup serves the fleet rollup's few tiny reads (and Ping) on
	// connections of their own, so a monitor's answer never queues behind
	// the read pool's heavy queries (scan_durations at a million runs) on a
	// busy server: the health of the fleet must not look worse because
	// someone is reading a lot.
	rollup *sql.DB
	remote bool
	now    kanade.Clock
	// writer admits one write transaction at a time. For SQLite the single
	// write connection already does; a libSQL server does not queue
	// concurrent transactions but fails the later ones with "database is
	// locked", so the projector's consumers and the heartbeat flusher would
	// keep failing and replaying each other's batches.
	writer chan struct{}
	// tables is what the inventory projection knows of its derived
	// tables (inventory.go).
	tables tableCache
	// stmts are the read statements prepared once (cached), by query text.
	stmts   map[stmtKey]*sql.Stmt
	stmtsMu sync.Mutex
	// checkpoint is the connection of checkpointLoop (SQLite files only);
	// stopCheckpoint ends the loop (once) and checkpointDone says it has.
	checkpoint     *sql.DB
	stopCheckpoint context.CancelFunc
	checkpointDone chan struct{}
	closeOnce      sync.Once
	closeErr       error
	// warmQuery is WarmOldResults' statement, built once from the schema
	// (warm.go), and warmNames what its rows count.
	warmMu    sync.Mutex
	warmQuery string
	warmNames []string
	// scans holds the memory scan_durations calls leave to the next
	// (scan_durations.go): a channel, not a sync.Pool, whose contents each
	// garbage collection but one drops, and a call allocates enough for
	// two collections at 10M runs.
	scans chan *scanScratch
	// scanCache is what scan_durations keeps of the buckets it read
	// (scan_cache.go), on SQLite; nil over libSQL, where the server sums
	// the later hours.
	scanCache *scanCache
}

// checkpointLoop runs a PASSIVE checkpoint every checkpointEvery until ctx
// ends (stopCheckpoint, at Close, which also interrupts one running). PASSIVE copies the frames no reader needs
// without taking the write lock, so the writer never waits for it; a
// checkpoint that fails or falls behind leaves the WAL to the writer's
// backstop (writerPragmas), so its error is not kept: the next tick tries
// again.
//
// PASSIVE never starts the WAL over: SQLite does that only when a write
// transaction begins with every frame copied back, and under a writer that
// never pauses the checkpointer is always a commit or two behind. The WAL
// then grew without end (686 MB after ten rounds of bench/scale's ingest
// of 100k results, each round slower than the last: 6.7 s to 22 s at 1M
// runs). So when the WAL holds more than walRestartFrames and the PASSIVE
// pass copied all it saw, the checkpointer takes the writer's turn
// (db.writer, between two write transactions: SQLite's own write lock is
// free for a moment only, and a busy-waiting checkpoint never won it) and
// runs a RESTART checkpoint: it copies the frames committed since the
// PASSIVE passes, waits for the readers to leave the WAL, for at most
// walRestartWait (its busy timeout; past it, it gives up and the next
// tick tries again), and the next write starts the WAL over from its
// beginning. The writer waits that long once per walRestartFrames
// written.
//
// RESTART, not TRUNCATE: the file keeps its size and is written over.
// Truncating it gave its blocks back to the file system, which on a disk
// mounted with discard trims them before ftruncate returns: 270–650 ms
// under the writer's turn, every 2–3 s while retention deleted at 10M
// runs, and the projector's batches waited that long (bench/scale's
// retention stall: p99 588 ms, then 380 ms with RESTART, 225 ms with the
// two extra passes and DefaultHousekeepingTxTime at 50 ms). The file is
// removed when the last connection closes, as always.
//
// A PASSIVE pass can also stop short every time: readers' snapshots pin
// the frames after theirs, and with readers polling beside a writer that
// commits back to back some snapshot may always be a commit behind. So
// past twice the limit the RESTART runs whatever PASSIVE copied, and
// copies the rest itself under the writer's turn: a longer wait, once,
// rather than a WAL without end.
func (db *DB) checkpointLoop(ctx context.Context, every time.Duration, limit int) {
	defer close(db.checkpointDone)
	// The connection is (re)opened at a tick when it is missing: one that
	// failed to open (or to take its busy timeout) must not end the loop
	// for the life of the DB, as it once did.
	var conn *sql.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil {
			c, err := db.checkpoint.Conn(ctx)
			if err != nil {
				continue
			}
			if _, err := c.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, walRestartWait.Milliseconds())); err != nil {
				c.Close()
				continue
			}
			conn = c
		}
		var busy, frames, copied int
		err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
		if err != nil || frames <= limit || copied != frames && frames <= 2*limit {
			continue
		}
		// Two more passes copy what the writer committed during the last,
		// each shorter, so the restart below finds little left to copy:
		// what it copies it must also sync, under the writer's turn.
		for range 2 {
			if conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied) != nil {
				break
			}
		}
		select { // between two of the writer's transactions
		case db.writer <- struct{}{}:
		case <-ctx.Done():
			return
		}
		_ = conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &frames, &copied)
		<-db.writer
	}
}

// walRestartFrames is the WAL size (in pages) past which the checkpointer
// starts it over: 64 MiB at 4 KiB pages, a few seconds of a busy projector.
// The file stays about that size (plus what a tick adds) once reached.
const walRestartFrames = 16384

// walRestartWait bounds how long a RESTART checkpoint holds off the
// writer while it waits for readers.
const walRestartWait = 250 * time.Millisecond

// cached runs a read query through a statement prepared once per DB, for
// the hot read paths whose SQL text is long enough that parsing it again
// at every request costs more than running it.
func (db *DB) cached(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.cachedOn(ctx, db.read, q, args...)
}

// cachedOn is cached on pool (db.read or db.rollup): a statement belongs to
// the pool it was prepared on.
func (db *DB) cachedOn(ctx context.Context, pool *sql.DB, q string, args ...any) (*sql.Rows, error) {
	key := stmtKey{pool, q}
	db.stmtsMu.Lock()
	st, ok := db.stmts[key]
	if !ok {
		var err error
		if st, err = pool.PrepareContext(ctx, q); err != nil {
			db.stmtsMu.Unlock()
			return nil, err
		}
		if db.stmts == nil {
			db.stmts = map[stmtKey]*sql.Stmt{}
		}
		db.stmts[key] = st
	}
	db.stmtsMu.Unlock()
	return st.QueryContext(ctx, args...)
}

// stmtKey names a prepared statement: its pool and its text.
type stmtKey struct {
	pool *sql.DB
	q    string
}

// Options tune Open. The zero value is usable.
type Options struct {
	// AuthToken authenticates to a remote libSQL server (KANADE_DB_AUTH_TOKEN).
	AuthToken string
	// Clock stamps updated_at and similar columns. Defaults to the wall clock.
	Clock kanade.Clock
	// ReadConns caps the SQLite read pool. Defaults to max(4, GOMAXPROCS).
	ReadConns int

	// checkpointEvery and walFrames replace checkpointEvery and
	// walRestartFrames in tests (export_test.go).
	checkpointEvery time.Duration
	walFrames       int
}

// Open opens the database named by dsn and applies pending migrations.
//
// A plain path or a file: URL opens SQLite (the parent directory is created);
// http://, https://, ws://, wss:// and libsql:// open libSQL.
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	db, err := New(dsn, opts)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// New is Open without the migrations: the handle, with no round trip to a
// remote server yet (libSQL connects on first use). It exists so a Lambda
// cold start can set up its routes on the handle while Migrate, its first
// round trip, is in flight; nothing may query the handle before Migrate
// has returned nil.
func New(dsn string, opts Options) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("open database: empty DSN")
	}
	if opts.Clock == nil {
		opts.Clock = kanade.SystemClock
	}
	if isRemote(dsn) {
		return openLibSQL(dsn, opts)
	}
	return openSQLite(dsn, opts)
}

func isRemote(dsn string) bool {
	for _, p := range []string{"http://", "https://", "ws://", "wss://", "libsql://"} {
		if strings.HasPrefix(strings.ToLower(dsn), p) {
			return true
		}
	}
	return false
}

// Redact hides credentials in a DSN so it can be logged.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 {
		return dsn
	}
	q := u.Query()
	if q.Has("authToken") {
		q.Set("authToken", "REDACTED")
		u.RawQuery = q.Encode()
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}

func openLibSQL(dsn string, opts Options) (*DB, error) {
	if opts.AuthToken != "" {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("open libsql %s: %w", Redact(dsn), err)
		}
		q := u.Query()
		q.Set("authToken", opts.AuthToken)
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	sdb, err := sql.Open("libsql", dsn)
	if err != nil {
		return nil, fmt.Errorf("open libsql %s: %w", Redact(dsn), err)
	}
	// The server serializes writers itself; each connection is a stream.
	sdb.SetMaxOpenConns(8)
	sdb.SetConnMaxIdleTime(time.Minute)
	return &DB{write: sdb, read: sdb, rollup: sdb, remote: true, now: opts.Clock, writer: make(chan struct{}, 1), scans: make(chan *scanScratch, scanScratches)}, nil
}

func openSQLite(dsn string, opts Options) (*DB, error) {
	path, query := dsn, ""
	if strings.HasPrefix(dsn, "file:") {
		path = strings.TrimPrefix(dsn, "file:")
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path, query = path[:i], path[i+1:]
		}
		path = strings.TrimPrefix(path, "//")
	}
	if path == "" {
		return nil, fmt.Errorf("open sqlite %q: no path", dsn)
	}
	if !sqliteLinked {
		return nil, fmt.Errorf("open sqlite %s: this build has no SQLite driver (tag kanade.nosqlite); use a libSQL URL (libsql://, http(s)://, ws(s)://)", path)
	}
	if path != ":memory:" {
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("open sqlite %s: %w", path, err)
			}
		}
	}
	full := "file:" + path + "?" + sqlitePragmas
	if query != "" {
		full += "&" + query
	}
	write, err := sql.Open("sqlite", full+writerPragmas+fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", walAutocheckpoint))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if path == ":memory:" {
		// Each :memory: connection is its own database: share the one writer.
		return &DB{write: write, read: write, rollup: write, now: opts.Clock, writer: make(chan struct{}, 1), scans: make(chan *scanScratch, scanScratches),
			scanCache: &scanCache{}}, nil
	}
	read, err := sql.Open("sqlite", full+readerPragmas)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := opts.ReadConns
	if n <= 0 {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	rollup, err := sql.Open("sqlite", full)
	if err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	rollup.SetMaxOpenConns(2)
	rollup.SetMaxIdleConns(2)
	checkpoint, err := sql.Open("sqlite", full)
	if err != nil {
		write.Close()
		read.Close()
		rollup.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	checkpoint.SetMaxOpenConns(1)
	checkpoint.SetMaxIdleConns(1)
	ctx, cancel := context.WithCancel(context.Background())
	db := &DB{write: write, read: read, rollup: rollup, now: opts.Clock, writer: make(chan struct{}, 1), scans: make(chan *scanScratch, scanScratches),
		scanCache: &scanCache{}, checkpoint: checkpoint, stopCheckpoint: cancel, checkpointDone: make(chan struct{})}
	every, limit := checkpointEvery, walRestartFrames
	if opts.checkpointEvery > 0 {
		every = opts.checkpointEvery
	}
	if opts.walFrames > 0 {
		limit = opts.walFrames
	}
	go db.checkpointLoop(ctx, every, limit)
	return db, nil
}

// Remote reports whether the database is a libSQL server, where each query is
// a network round trip.
func (db *DB) Remote() bool { return db.remote }

// Close closes both pools.
func (db *DB) Close() error {
	db.stmtsMu.Lock()
	var err error
	for _, st := range db.stmts {
		err = errors.Join(err, st.Close())
	}
	db.stmts = nil
	db.stmtsMu.Unlock()
	if db.checkpoint != nil {
		db.closeOnce.Do(func() {
			db.stopCheckpoint()
			<-db.checkpointDone
			db.closeErr = db.checkpoint.Close()
		})
		err = errors.Join(err, db.closeErr)
	}
	err = errors.Join(err, db.write.Close())
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	if db.rollup != db.read && db.rollup != db.write {
		err = errors.Join(err, db.rollup.Close())
	}
	return err
}

// Ping checks that the database answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.rollup.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// Tx is a write transaction. Besides the SQL transaction it carries the
// pending duration-summary changes, flushed just before commit so that rows and
// summaries always commit together.
type Tx struct {
	tx        *sql.Tx
	now       time.Time
	durations durationChanges
	// cache and tables: the derived tables known before the transaction,
	// and what it established, merged into cache when it commits.
	cache  *tableCache
	tables *tablePending
	// stmts are the statements prepared for this transaction (see
	// prepared), closed by database/sql when it ends.
	stmts map[string]*sql.Stmt
	// careful says this is the second try of a transaction whose first
	// failed in an inventory step: each step runs under its own savepoint
	// (see projectInventory).
	careful bool
}

// prepared is query prepared once per transaction. The inventory
// projection runs the same dozen statements for every report of a batch;
// preparing each again (SQLite parses and plans every ExecContext) was a
// twentieth of the projector's time with inventory reports (bench/ingest).
// The queries cached are built from the statement's shape only (checked
// identifiers and placeholders, never values), so there are few of them.
func (tx *Tx) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if s, ok := tx.stmts[query]; ok {
		return s, nil
	}
	s, err := tx.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if tx.stmts == nil {
		tx.stmts = map[string]*sql.Stmt{}
	}
	tx.stmts[query] = s
	return s, nil
}

// execPrepared runs query through prepared.
func (tx *Tx) execPrepared(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := tx.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

// Update runs fn in a write transaction and commits it if fn returns nil.
// Write transactions of one DB run one at a time.
//
// fn may run twice: when a step of the inventory projection fails
// (errStepFailed), the transaction is rolled back and fn runs again in a
// careful one, where each step undoes only itself (projectInventory).
func (db *DB) Update(ctx context.Context, fn func(tx *Tx) error) error {
	select {
	case db.writer <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("begin write: %w", ctx.Err())
	}
	defer func() { <-db.writer }()
	err := db.update(ctx, fn, false)
	if errors.Is(err, errStepFailed) && ctx.Err() == nil {
		err = db.update(ctx, fn, true)
	}
	return err
}

// update is one try of Update.
func (db *DB) update(ctx context.Context, fn func(tx *Tx) error, careful bool) error {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	tx := &Tx{tx: sqlTx, now: db.now(), cache: &db.tables, careful: careful}
	if err := fn(tx); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := tx.flushDurations(ctx); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, sql.ErrTxDone) {
			// database/sql rolled the transaction back when ctx ended; say
			// why, so that a caller stopping its work sees its own
			// cancellation rather than a failure.
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return fmt.Errorf("commit: %w", err)
	}
	db.tables.merge(tx.tables)
	return nil
}

// Exec runs a statement inside the transaction.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, query, args...)
}

// Migrate applies the pending migrations (one read when there are none).
// Open calls it; a caller of New must, before any other use of the handle.
func (db *DB) Migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sort.Strings(names)
	if db.upToDate(ctx, names) {
		// The common case at every start, and the one a Lambda cold start
		// pays for in round trips to a remote server: one read, no write
		// transaction per migration.
		return nil
	}
	if _, err := db.write.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	for _, name := range names {
		version := strings.TrimSuffix(filepath.Base(name), ".sql")
		body, err := migrations.ReadFile(name)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
		err = db.Update(ctx, func(tx *Tx) error {
			var n int
			if err := tx.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if hasStatements(string(body)) {
				// (libSQL refuses a request with no statement in it.)
				if _, err := tx.Exec(ctx, string(body)); err != nil {
					return err
				}
			}
			if hook := migrationHook(version); hook != nil {
				if err := hook(tx, ctx); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				version, kanade.FormatTime(tx.now))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", version, err)
		}
	}
	// A migration may rewrite the summaries and start duration_buckets'
	// marks over: nothing scan_durations kept before is known to be them.
	if db.scanCache != nil {
		db.scanCache.clear()
	}
	return nil
}

// hasStatements reports whether a migration's SQL holds more than
// whitespace and -- comments (one whose work is all its Go step holds
// only its comment).
func hasStatements(sql string) bool {
	for line := range strings.Lines(sql) {
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "--") {
			return true
		}
	}
	return false
}

// migrationHook returns the Go step of a migration, run after its SQL in
// the same transaction, for changes SQL cannot make (re-encoding the
// duration summaries, dropping indexes SQL cannot name); nil for most.
func migrationHook(version string) func(*Tx, context.Context) error {
	switch version {
	case "0028_duration_runs":
		return (*Tx).rebuildEmptyDurations
	case "0027_history_identity_index":
		return (*Tx).dropIdentityIndexes
	}
	return nil
}

// upToDate says whether every migration in names is recorded as applied,
// in one read. Any doubt (no table yet, an error) answers false, and
// migrate takes the careful path, which checks each one in a transaction.
func (db *DB) upToDate(ctx context.Context, names []string) bool {
	rows, err := db.write.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return false
	}
	defer rows.Close()
	applied := map[string]bool{}
	for rows.Next() {
		var v string
		if rows.Scan(&v) != nil {
			return false
		}
		applied[v] = true
	}
	if rows.Err() != nil {
		return false
	}
	for _, name := range names {
		if !applied[strings.TrimSuffix(filepath.Base(name), ".sql")] {
			return false
		}
	}
	return true
}
