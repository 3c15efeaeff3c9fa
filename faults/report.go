package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is a scenario's verdict.
type Status string

// The verdicts. SKIPPED is never counted as a pass.
const (
	Pass    Status = "PASS"
	Fail    Status = "FAIL"
	Skipped Status = "SKIPPED"
)

// Check is one pass/fail criterion and what was observed.
type Check struct {
	OK   bool
	Text string
}

// Excerpt is a few log lines quoted in the report.
type Excerpt struct {
	Title string
	Lines []string
}

// Result is what one scenario did, measured and concluded. Scenarios fill it
// as they go, so a scenario that fails half-way still reports what it saw.
type Result struct {
	Name     string
	Title    string
	Duration time.Duration
	Figures  []string
	Did      []string
	Measured []string
	Checks   []Check
	Notes    []string
	Excerpts []Excerpt
	// Err is the error that stopped the scenario before its checks were done.
	Err error
	// SkipReason, when set, makes the scenario SKIPPED (never PASS).
	SkipReason string
}

// Status derives the verdict: an error or a failed check fails; a scenario
// with no check at all fails too (it proved nothing).
func (r *Result) Status() Status {
	if r.SkipReason != "" && r.Err == nil && !r.anyFailed() {
		return Skipped
	}
	if r.Err != nil || r.anyFailed() || len(r.Checks) == 0 {
		return Fail
	}
	return Pass
}

func (r *Result) anyFailed() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return true
		}
	}
	return false
}

// Check records a criterion and returns ok.
func (r *Result) Check(ok bool, format string, a ...any) bool {
	r.Checks = append(r.Checks, Check{OK: ok, Text: fmt.Sprintf(format, a...)})
	return ok
}

// Do records a step that was carried out.
func (r *Result) Do(format string, a ...any) { r.Did = append(r.Did, fmt.Sprintf(format, a...)) }

// Measure records an observation.
func (r *Result) Measure(format string, a ...any) {
	r.Measured = append(r.Measured, fmt.Sprintf(format, a...))
}

// Figure records a key figure for the summary table.
func (r *Result) Figure(format string, a ...any) {
	r.Figures = append(r.Figures, fmt.Sprintf(format, a...))
}

// Note records a remark for the reader.
func (r *Result) Note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

// Quote adds log lines to the report (nothing when lines is empty).
func (r *Result) Quote(title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	r.Excerpts = append(r.Excerpts, Excerpt{Title: title, Lines: lines})
}

// Header is the run's context, printed on top of the report.
type Header struct {
	Date      time.Time
	Commit    string
	Size      string
	NProc     int
	LoadStart string
	LoadEnd   string
	GoVersion string
	Command   string
	Wall      time.Duration
}

// Render writes the report as Markdown.
func Render(w io.Writer, h Header, results []*Result) error {
	var b strings.Builder
	b.WriteString("# Reliability report: the fault suite\n\n")
	b.WriteString("Real processes (nats-server, `shells/worker`, `shells/http`) on loopback, faults injected from outside; ")
	b.WriteString("regenerate with `" + h.Command + "` (this file is written by the suite itself).\n\n")
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n", h.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "| commit | `%s` |\n", h.Commit)
	fmt.Fprintf(&b, "| size | `%s` |\n", h.Size)
	fmt.Fprintf(&b, "| nproc | %d |\n", h.NProc)
	fmt.Fprintf(&b, "| load average (start → end) | %s → %s |\n", h.LoadStart, h.LoadEnd)
	fmt.Fprintf(&b, "| go | %s |\n", h.GoVersion)
	fmt.Fprintf(&b, "| wall time | %s |\n\n", round(h.Wall))

	passed, failed, skipped := 0, 0, 0
	for _, r := range results {
		switch r.Status() {
		case Pass:
			passed++
		case Fail:
			failed++
		default:
			skipped++
		}
	}
	fmt.Fprintf(&b, "## Summary\n\n%d passed, %d failed, %d skipped.\n\n", passed, failed, skipped)
	b.WriteString("| scenario | result | key figures | duration |\n|---|---|---|---|\n")
	for _, r := range results {
		figs := strings.Join(r.Figures, "; ")
		if r.Status() == Skipped {
			figs = "skipped: " + r.SkipReason
		} else if r.Err != nil && figs == "" {
			figs = "error: " + oneLine(r.Err.Error(), 120)
		}
		fmt.Fprintf(&b, "| [%s](#%s) | **%s** | %s | %s |\n", r.Name, anchor(r.Name), r.Status(), cell(figs), round(r.Duration))
	}
	b.WriteString("\n")
	for _, r := range results {
		fmt.Fprintf(&b, "## %s\n\n", r.Name)
		if r.Title != "" {
			fmt.Fprintf(&b, "%s\n\n", r.Title)
		}
		fmt.Fprintf(&b, "**%s** in %s.", r.Status(), round(r.Duration))
		if r.SkipReason != "" {
			fmt.Fprintf(&b, " Skipped: %s.", r.SkipReason)
		}
		b.WriteString("\n\n")
		list := func(title string, items []string) {
			if len(items) == 0 {
				return
			}
			fmt.Fprintf(&b, "%s\n\n", title)
			for _, it := range items {
				fmt.Fprintf(&b, "- %s\n", it)
			}
			b.WriteString("\n")
		}
		list("What was done:", r.Did)
		list("What was measured:", r.Measured)
		if len(r.Checks) > 0 || r.Err != nil {
			b.WriteString("Verdict:\n\n")
			for _, c := range r.Checks {
				mark := "pass"
				if !c.OK {
					mark = "**FAIL**"
				}
				fmt.Fprintf(&b, "- %s: %s\n", mark, c.Text)
			}
			if r.Err != nil {
				fmt.Fprintf(&b, "- **FAIL**: stopped early: %s\n", oneLine(r.Err.Error(), 600))
			}
			if len(r.Checks) == 0 && r.Err == nil && r.SkipReason == "" {
				b.WriteString("- **FAIL**: no check ran\n")
			}
			b.WriteString("\n")
		}
		list("Notes:", r.Notes)
		for _, e := range r.Excerpts {
			fmt.Fprintf(&b, "%s:\n\n```text\n", e.Title)
			for _, l := range e.Lines {
				b.WriteString(oneLine(l, 400) + "\n")
			}
			b.WriteString("```\n\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func round(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// anchor is GitHub's heading anchor for a scenario name.
func anchor(name string) string { return strings.ToLower(strings.ReplaceAll(name, " ", "-")) }

// cell makes text safe in a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}

// oneLine flattens s and cuts it to max runes.
func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " ⏎ ")
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}
