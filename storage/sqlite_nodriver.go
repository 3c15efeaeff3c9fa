//go:build kanade.nosqlite

package storage

// sqliteLinked is false in a build without the SQLite driver: the Lambda
// bootstrap, where nothing persists and the driver would be a third of the
// binary. Only libSQL URLs open there.
const sqliteLinked = false
