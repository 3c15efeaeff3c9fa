package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/kanade-fleet/backend"
	"github.com/kanade-fleet/backend/bus"
)

// The demo fleet's inventory job (fleet.md §5): its runs print hardware
// facts and the installed applications as one JSON object, which the
// projector turns into inventory_facts, rows of sim_inventory_apps and
// history. Reports are a pure function of the seed, the PC and the time,
// so the same PC reports the same apps until its next change: every
// InventoryEpoch a few of a PC's apps get a new version, and now and then
// one is installed or removed.

// InventoryJob is the inventory job the demo schedules on every PC.
var InventoryJob = Job{ID: "sim-inventory-sw", Version: "1", MedianMs: 6000, Sigma: 0.4, Timeout: 10 * time.Minute}

// InventoryEpoch is how often a PC's installed apps may change.
const InventoryEpoch = time.Hour

// InventoryTable is the derived table of the installed apps.
const InventoryTable = "sim_inventory_apps"

// inventoryHint is InventoryJob's hint.
const inventoryHint = `{
 "display":[{"field":"hostname","label":"Host"},{"field":"os_name","label":"OS"},{"field":"os_version","label":"Version"},
  {"field":"cpu_model","label":"CPU"},{"field":"cpu_cores","label":"Cores","type":"number"},
  {"field":"ram_bytes","label":"RAM","type":"bytes"},
  {"field":"disks","label":"Disks","type":"table","columns":[{"field":"device_id","label":"Drive"},
   {"field":"size_bytes","label":"Size","type":"bytes"},{"field":"free_bytes","label":"Free","type":"bytes"},
   {"field":"file_system","label":"FS"}]}],
 "summary":[{"field":"hostname","label":"Host"},{"field":"os_version","label":"Version"},{"field":"ram_bytes","label":"RAM","type":"bytes"}],
 "explode":[{"field":"apps","table":"` + InventoryTable + `","primary_key":["name","source"],
  "columns":[{"field":"name","index":true},{"field":"version"},{"field":"publisher"},{"field":"source"},
   {"field":"size_kb","type":"integer"},{"field":"install_date"}],
  "track_history":true}],
 "history_scalars":["os_version","ram_bytes"]}`

// InventoryManifest is InventoryJob's manifest, as KV jobs holds it.
func InventoryManifest() []byte {
	return []byte(`{"id":"` + InventoryJob.ID + `","version":"` + InventoryJob.Version + `","description":"Hardware and installed software",` +
		`"execute":{"shell":"powershell","script":"Get-KanadeInventory | ConvertTo-Json -Depth 4","timeout":"10m"},` +
		`"inventory":` + inventoryHint + `}`)
}

// InventoryHint is InventoryJob's hint, decoded.
func InventoryHint() *kanade.InventoryHint {
	m, err := kanade.ParseManifest(InventoryJob.ID, InventoryManifest())
	if err != nil {
		panic("sim: the inventory manifest does not parse: " + err.Error())
	}
	h, err := m.InventorySpec()
	if err != nil {
		panic("sim: the inventory hint does not validate: " + err.Error())
	}
	return h
}

// InventorySchedule runs InventoryJob on every PC once an epoch.
const InventorySchedule = `{"id":"sim-inventory-hourly","when":{"per_pc":{"every":"1h"}},"job_id":"` + "sim-inventory-sw" + `","target":{"all":true},"jitter":"30s"}`

// PutInventoryDemo stores InventoryJob's manifest and, when absent, its
// schedule, so the demo's dashboard has inventory to show.
func PutInventoryDemo(ctx context.Context, c *bus.Client) error {
	if _, err := c.Put(ctx, kanade.BucketJobs, InventoryJob.ID, InventoryManifest()); err != nil {
		return err
	}
	if _, err := c.Create(ctx, kanade.BucketSchedules, "sim-inventory-hourly", []byte(InventorySchedule)); err != nil && !errors.Is(err, bus.ErrExists) {
		return err
	}
	return nil
}

// app is one application of the catalog; share is the fraction of PCs
// that have it (0: a long-tail app, drawn at random).
type app struct {
	name, publisher, source string
	kb                      int64
	share                   float64
}

// commonApps are the apps most PCs have, with their share of the fleet.
var commonApps = []app{
	{"Google Chrome", "Google LLC", "x64", 310000, 0.92}, {"Microsoft Edge", "Microsoft Corporation", "x64", 520000, 0.99},
	{"Microsoft Edge WebView2 Runtime", "Microsoft Corporation", "x64", 510000, 0.99}, {"Mozilla Firefox", "Mozilla", "x64", 240000, 0.35},
	{"Zoom Workplace", "Zoom Video Communications, Inc.", "user", 290000, 0.6}, {"Microsoft Teams", "Microsoft Corporation", "user", 480000, 0.9},
	{"Slack", "Slack Technologies", "user", 380000, 0.3}, {"7-Zip 23.01 (x64)", "Igor Pavlov", "x64", 5600, 0.7},
	{"Notepad++ (64-bit x64)", "Notepad++ Team", "x64", 14000, 0.4}, {"VLC media player", "VideoLAN", "x64", 170000, 0.3},
	{"Adobe Acrobat (64-bit)", "Adobe", "x64", 900000, 0.8}, {"Microsoft 365 Apps for enterprise - ja-jp", "Microsoft Corporation", "x64", 3500000, 0.95},
	{"Microsoft OneDrive", "Microsoft Corporation", "user", 290000, 0.97}, {"Git", "The Git Development Community", "x64", 330000, 0.15},
	{"Microsoft Visual Studio Code", "Microsoft Corporation", "user", 380000, 0.2}, {"Python 3.12.4 (64-bit)", "Python Software Foundation", "x64", 110000, 0.12},
	{"Chrome Remote Desktop Host", "Google LLC", "x86", 52000, 0.08}, {"Google Drive", "Google LLC", "x64", 420000, 0.25},
	{"Microsoft Visual C++ 2015-2022 Redistributable (x64)", "Microsoft Corporation", "x64", 20000, 0.98},
	{"Microsoft Visual C++ 2015-2022 Redistributable (x86)", "Microsoft Corporation", "x86", 18000, 0.95},
	{"Windows PC Health Check", "Microsoft Corporation", "x64", 11000, 0.6}, {"Cisco Secure Client", "Cisco Systems, Inc.", "x64", 90000, 0.5},
	{"CrowdStrike Windows Sensor", "CrowdStrike, Inc.", "x64", 160000, 0.9}, {"Kanade Agent", "kanade", "x64", 24000, 1},
}

// Inventory generates inventory reports for a fleet.
type Inventory struct {
	seed    uint64
	apps    int
	catalog []app // long-tail apps
}

// NewInventory returns a generator of reports with about apps installed
// apps per PC (at least the common ones each PC has), drawn from a catalog
// of catalog long-tail apps.
func NewInventory(seed uint64, apps, catalog int) *Inventory {
	inv := &Inventory{seed: seed, apps: apps}
	rng := rand.New(rand.NewPCG(seed, 0x696e76))
	kinds := []string{"Tool", "Client", "Driver", "Runtime", "Viewer", "Agent", "SDK", "Utility"}
	for i := range catalog {
		inv.catalog = append(inv.catalog, app{
			name:      fmt.Sprintf("Vendor%03d %s %d", i%400, kinds[i%len(kinds)], i/400),
			publisher: fmt.Sprintf("Vendor%03d Inc.", i%400), source: []string{"x64", "x86", "user"}[rng.IntN(3)],
			kb: int64(500 + rng.IntN(400000))})
	}
	return inv
}

// mix hashes its parts into one number, the generator's only randomness
// that depends on a PC or a time, so reports need no state.
func (inv *Inventory) mix(parts ...uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for _, p := range append([]uint64{inv.seed}, parts...) {
		for i := range b {
			b[i] = byte(p >> (8 * i))
		}
		h.Write(b[:])
	}
	return h.Sum64()
}

func (inv *Inventory) chance(p float64, parts ...uint64) bool {
	return float64(inv.mix(parts...)%1_000_000)/1_000_000 < p
}

// Report is the stdout of PC number i (named pc) run at at.
func (inv *Inventory) Report(pc string, i int, at time.Time) string {
	epoch := uint64(at.Unix() / int64(InventoryEpoch/time.Second))
	pcN := uint64(i)
	var b strings.Builder
	rng := rand.New(rand.NewPCG(inv.seed, pcN))
	cores := []int{4, 8, 12, 16}[rng.IntN(4)]
	ram := int64([]int{8, 16, 32}[rng.IntN(3)]) << 30
	build := 22631 + int(inv.mix(pcN, epoch/24, 1)%3) // a monthly patch now and then
	size := int64(256+256*rng.IntN(4)) << 30
	free := size/8 + int64(inv.mix(pcN, epoch, 2)%uint64(size/2))
	fmt.Fprintf(&b, `{"hostname":%q,"os_name":"Windows 11 Pro","os_version":"10.0.%d","cpu_model":"Intel(R) Core(TM) i%d-1%d%d0U",`+
		`"cpu_cores":%d,"ram_bytes":%d,"disks":[{"device_id":"C:","size_bytes":%d,"free_bytes":%d,"file_system":"NTFS"}],"apps":[`,
		strings.ToLower(pc), build, 5+2*rng.IntN(2), 2+rng.IntN(3), rng.IntN(9), cores, ram, size, free)
	n := 0
	write := func(a app, k uint64, common bool) {
		// Each app of each PC moves to a new version now and then,
		// staggered: a common app (a browser, the office suite) every
		// one to fourteen days, a long-tail one every one to three
		// months. A PC's hourly report changes an app about one time
		// in five.
		period := 24 + inv.mix(pcN, k, 3)%(13*24)
		if !common {
			period = 30*24 + inv.mix(pcN, k, 3)%(60*24)
		}
		version := (epoch + inv.mix(pcN, k, 4)%period) / period
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		fmt.Fprintf(&b, `{"name":%q,"version":"%d.%d.%d","publisher":%q,"source":%q,"size_kb":%d,"install_date":"2025%02d%02d"}`,
			a.name, 1+k%30, version%100, inv.mix(pcN, k, version)%1000, a.publisher, a.source, a.kb+int64(version%7)*100,
			1+inv.mix(pcN, k, 5)%12, 1+inv.mix(pcN, k, 6)%28)
	}
	for k, a := range commonApps {
		if inv.chance(a.share, pcN, uint64(k), 7) {
			write(a, uint64(k), true)
		}
	}
	// The long tail: a stable set, a few of which come and go (installed
	// for a couple of days, then removed for a while).
	seen := map[uint64]bool{}
	for j := 0; n < inv.apps && j < 4*len(inv.catalog); j++ {
		k := inv.mix(pcN, uint64(j), 8) % uint64(len(inv.catalog))
		if seen[k] || j%53 == 7 && inv.chance(0.3, pcN, uint64(j), (epoch+inv.mix(pcN, uint64(j), 9)%48)/48) {
			continue
		}
		seen[k] = true
		write(inv.catalog[k], uint64(len(commonApps))+k, false)
	}
	b.WriteString("]}")
	return b.String()
}

// inventoryStdout is the stdout of agent i's run of InventoryJob at at.
func (f *Fleet) inventoryStdout(i int, at time.Time) string {
	if f.inv == nil {
		f.inv = NewInventory(f.cfg.Seed, 150, 3000)
	}
	return f.inv.Report(f.PcID(i), i, at)
}
