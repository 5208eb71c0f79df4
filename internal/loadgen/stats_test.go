package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	ten := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample p50", ms(7), 50, 7 * time.Millisecond},
		{"one sample p99", ms(7), 99, 7 * time.Millisecond},
		{"ten p50 is the 5th", ten, 50, 5 * time.Millisecond},
		{"ten p90 is the 9th", ten, 90, 9 * time.Millisecond},
		{"ten p99 rounds up to the 10th", ten, 99, 10 * time.Millisecond},
		{"ten p100 is max", ten, 100, 10 * time.Millisecond},
		{"ten p1 is min", ten, 1, 1 * time.Millisecond},
		{"hundred p99 is the 99th", hundred, 99, 99 * time.Millisecond},
		{"hundred p99.9 is the 100th", hundred, 99.9, 100 * time.Millisecond},
		{"two p50 is the lower", ms(1, 2), 50, 1 * time.Millisecond},
		{"two p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"p0 clamps to min", ten, 0, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: Percentile(p=%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestRecorderMergeAndSummarize(t *testing.T) {
	a, b := NewRecorder(), NewRecorder()
	for i := 10; i >= 1; i-- { // out of order: Summarize sorts
		a.Add("msg", time.Duration(i)*time.Millisecond)
	}
	b.Add("msg", 100*time.Millisecond)
	b.Err("RCPT 550")
	b.Err("RCPT 550")
	a.Err("timeout")
	a.Merge(b)
	s := a.Summarize("msg")
	if s.N != 11 || s.P50 != 6*time.Millisecond || s.P90 != 10*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Errorf("Summarize = %+v", s)
	}
	if a.Errors() != 3 {
		t.Errorf("Errors() = %d, want 3", a.Errors())
	}
	var out strings.Builder
	a.Report(&out, "msg")
	for _, want := range []string{"msg", "11", "6.00ms", "100.00ms", "2  RCPT 550", "1  timeout"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseUsers(t *testing.T) {
	tests := []struct {
		spec    string
		want    []string
		wantErr bool
	}{
		{"bench%d@bench.test:1-3", []string{"bench1@bench.test", "bench2@bench.test", "bench3@bench.test"}, false},
		{"bench%d:7-7", []string{"bench7"}, false},
		{"a@x, b@x", []string{"a@x", "b@x"}, false},
		{"solo@x", []string{"solo@x"}, false},
		{"bench%d:5-1", nil, true},
		{"bench%d:x-2", nil, true},
		{"", nil, true},
		{" , ", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseUsers(tt.spec)
		if (err != nil) != tt.wantErr || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("ParseUsers(%q) = %q, %v; want %q, err=%v", tt.spec, got, err, tt.want, tt.wantErr)
		}
	}
}
