package storage

import "context"

// durationChanges accumulates the duration-summary changes of one write
// transaction. Filled by Tx.addDuration and Tx.removeDuration, written by
// flushDurations just before commit.
type durationChanges struct{}

func (tx *Tx) flushDurations(ctx context.Context) error { return nil }
