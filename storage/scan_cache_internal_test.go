package storage

import "testing"

// TestScanCacheStaysWithinItsLimit fills a small cache: a bucket that does
// not fit makes room by dropping buckets of hours before the window of the
// call that keeps it, never the window's own; when nothing can go, it is
// not kept, nor are more bins of a bucket no longer kept.
func TestScanCacheStaysWithinItsLimit(t *testing.T) {
	c := &scanCache{limit: 100}
	bucket := func(hour int64, size int) *cachedBucket {
		return &cachedBucket{key: bucketKey{hour: hour, job: "j"}, v: 1, size: size}
	}
	old1, old2 := bucket(1, 40), bucket(2, 40)
	c.put(old1, 1)
	c.put(old2, 1)
	if c.size != 80 || len(c.buckets) != 2 {
		t.Fatalf("size %d, %d buckets, want 80 and 2", c.size, len(c.buckets))
	}
	now := bucket(5, 50) // a window from hour 2: hour 1 may go, hour 2 not
	c.put(now, 2)
	if c.buckets[old1.key] != nil || c.buckets[old2.key] != old2 || c.buckets[now.key] != now || c.size != 90 {
		t.Fatalf("after a bucket of hour 5 from hour 2: %v, size %d; want hours 2 and 5, 90", c.buckets, c.size)
	}
	big := bucket(6, 20) // nothing before hour 2 left: not kept
	c.put(big, 2)
	if c.buckets[big.key] != nil || c.size != 90 {
		t.Fatalf("a bucket that cannot fit was kept: size %d", c.size)
	}
	now.mu.Lock()
	grew := c.grow(now, 10, 2)
	now.mu.Unlock()
	if !grew || c.size != 100 || now.size != 60 {
		t.Fatalf("grow within the limit: %v, size %d, bucket %d; want true, 100, 60", grew, c.size, now.size)
	}
	now.mu.Lock()
	grew = c.grow(now, 1, 2)
	now.mu.Unlock()
	if grew {
		t.Fatal("grew past the limit")
	}
	c.put(bucket(7, 30), 5) // a window from hour 5: hour 2 goes
	if c.buckets[old2.key] != nil || c.size != 90 {
		t.Fatalf("after a bucket from hour 5: size %d, hour 2 kept: %v", c.size, c.buckets[old2.key] != nil)
	}
	if c.grow(big, 1, 5) {
		t.Fatal("a bucket not kept grew")
	}
	newer := &cachedBucket{key: now.key, v: 2, size: 5}
	c.put(newer, 5)
	if c.buckets[now.key] != newer || c.size != 35 {
		t.Fatalf("a later mark did not replace the kept one: size %d", c.size)
	}
	c.put(now, 5) // an earlier mark never replaces a later one
	if c.buckets[now.key] != newer {
		t.Fatal("an earlier mark replaced a later one")
	}
	c.clear()
	if c.size != 0 || len(c.buckets) != 0 {
		t.Fatal("clear kept something")
	}
}
