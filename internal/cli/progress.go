package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progressBar shows how far a long command is. On a terminal it redraws
// one line in place; written anywhere else (a log, a pipe) it prints a
// line at each new stage and at each tenth of the way, so logs stay short.
type progressBar struct {
	w     io.Writer
	tty   bool
	start time.Time
	stage string
	shown int       // tenths (not a terminal) or permille (terminal) last shown
	drawn time.Time // when counts last drew
}

const barWidth = 30

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, tty: ok && term.IsTerminal(int(f.Fd())), start: time.Now(), shown: -1}
}

// update shows done out of total in stage.
func (p *progressBar) update(stage string, done, total int64) {
	if total <= 0 {
		total, done = 1, 1
	}
	frac := min(float64(done)/float64(total), 1)
	if !p.tty {
		tenth := int(frac * 10)
		if stage == p.stage && tenth == p.shown {
			return
		}
		p.stage, p.shown = stage, tenth
		fmt.Fprintf(p.w, "%3d%%  %s\n", int(frac*100), stage)
		return
	}
	permille := int(frac * 1000)
	if stage == p.stage && permille == p.shown {
		return
	}
	p.stage, p.shown = stage, permille
	p.draw(frac, fmt.Sprintf("%-12s", stage))
}

func (p *progressBar) draw(frac float64, label string) {
	full := int(frac * barWidth)
	bar := strings.Repeat("=", full)
	if full < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-full-1)
	}
	// \x1b[K clears what a longer line drawn before left.
	fmt.Fprintf(p.w, "\r[%s] %5.1f%%  %s %s \x1b[K", bar, frac*100, label, time.Since(p.start).Round(time.Second))
}

// counts shows done of total with a detail (counts, sizes) on a
// terminal, redrawn at most ten times a second. Anywhere else it shows
// nothing: the command prints a summary at the end instead.
func (p *progressBar) counts(done, total int64, detail string) {
	if !p.tty {
		return
	}
	if done < total && time.Since(p.drawn) < 100*time.Millisecond {
		return
	}
	p.drawn = time.Now()
	frac := 1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	p.draw(frac, detail)
}

// printf prints a line of its own, clearing the bar's line first on a
// terminal; the next update draws the bar again.
func (p *progressBar) printf(format string, args ...any) {
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown, p.drawn = -1, time.Time{}
	}
	fmt.Fprintf(p.w, format, args...)
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
