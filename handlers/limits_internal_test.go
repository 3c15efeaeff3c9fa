package handlers

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/kanade-fleet/backend/storage"
)

// TestLimitTagsAreTheLimits: struct tags cannot name a constant, so the
// maximum huma documents and enforces on each limit parameter is a literal;
// this keeps every literal equal to the limit the code applies.
func TestLimitTagsAreTheLimits(t *testing.T) {
	tests := []struct {
		input any
		want  int
	}{
		{readsPage{}, storage.MaxPageLimit},
		{readsAgentsInput{}, storage.MaxPageLimit},
		{readsResultsInput{}, storage.MaxPageLimit},
		{upcomingInput{}, upcomingMax},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.input)
		f, ok := typ.FieldByName("Limit")
		if !ok {
			t.Errorf("%s has no Limit field", typ.Name())
			continue
		}
		if got, err := strconv.Atoi(f.Tag.Get("maximum")); err != nil || got != tt.want {
			t.Errorf("%s.Limit maximum tag = %q, want %d", typ.Name(), f.Tag.Get("maximum"), tt.want)
		}
	}
}
