//go:build !kanade.nosqlite

package storage

import _ "modernc.org/sqlite" // registers "sqlite"

// sqliteLinked says whether this build can open SQLite files.
const sqliteLinked = true
