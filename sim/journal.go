package sim

import (
	"strings"
	"time"
)

// journalLines is how many of its last log lines a simulated agent keeps
// (besides the lines of its start).
const journalLines = 32

// logLine is one line of an agent's log, kept as values: the text is made
// only when logs.fetch asks for it, and values a fan-out gives every agent
// (a job id, a request_id) are shared, not copied per agent.
type logLine struct {
	at     time.Time
	level  string
	target string // the module, as the agent's tracing output names it
	msg    string
	fields []string // key, value, key, value…
}

func (l logLine) String() string {
	var b strings.Builder
	b.WriteString(l.at.UTC().Format("2006-01-02T15:04:05.000000Z"))
	b.WriteString(" ")
	b.WriteString(strings.Repeat(" ", max(0, 5-len(l.level))))
	b.WriteString(l.level)
	b.WriteString(" ")
	b.WriteString(l.target)
	b.WriteString(": ")
	b.WriteString(l.msg)
	for i := 0; i+1 < len(l.fields); i += 2 {
		b.WriteString(" ")
		b.WriteString(l.fields[i])
		b.WriteString("=")
		b.WriteString(l.fields[i+1])
	}
	return b.String()
}

// journal is the simulated agents' logs: the lines of their start, made
// up on demand, and the last journalLines lines of each agent that has done
// something since, kept only for those, so a quiet 10k-agent fleet holds
// no log at all.
type journal struct {
	start time.Time
	// head makes agent i's lines of its start.
	head  func(i int, start time.Time) []logLine
	lines map[int]*ring
}

// ring is one agent's last lines, oldest first from next once full.
type ring struct {
	lines []logLine
	next  int
}

func newJournal(start time.Time, head func(int, time.Time) []logLine) *journal {
	return &journal{start: start, head: head, lines: map[int]*ring{}}
}

// add appends a line to agent i's log.
func (j *journal) add(i int, l logLine) {
	r := j.lines[i]
	if r == nil {
		r = &ring{}
		j.lines[i] = r
	}
	if len(r.lines) < journalLines {
		r.lines = append(r.lines, l)
		return
	}
	r.lines[r.next] = l
	r.next = (r.next + 1) % journalLines
}

// tail is the last n lines of agent i's log, each ending in a newline,
// dropping the oldest of them until the whole fits in limit bytes.
func (j *journal) tail(i, n, limit int) []byte {
	all := j.head(i, j.start)
	if r := j.lines[i]; r != nil {
		all = append(all, r.lines[r.next:]...)
		all = append(all, r.lines[:r.next]...)
	}
	all = all[max(0, len(all)-n):]
	texts := make([]string, len(all))
	size := 0
	for k, l := range all {
		texts[k] = l.String() + "\n"
		size += len(texts[k])
	}
	for len(texts) > 0 && size > limit {
		size -= len(texts[0])
		texts = texts[1:]
	}
	return []byte(strings.Join(texts, ""))
}
