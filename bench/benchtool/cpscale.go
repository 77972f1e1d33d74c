package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// cpScale is what BenchmarkControlPlaneScale (internal/controlplane/
// scale_test.go) reported: its log lines and custom metrics.
type cpScale struct {
	Services, PerService, Endpoints, Proxies int
	InitialSync                              time.Duration
	FlipAffected                             int // connected proxies that call the flipped workload's service; -1 unknown
	Kinds                                    map[string]cpKind
	RSSMB, PeakRSSMB                         float64 // of the `trellis control` process; -1 when not reported
	Metrics                                  map[string]float64
}

// cpKind is one kind of measured change: "flip", "register" or "vs-edit".
type cpKind struct {
	Rounds, Arrivals int
	P50, P99, Max    time.Duration
	PushedPerRound   float64
	NeverArrived     int
}

var (
	cpMeshLine  = regexp.MustCompile(`mesh: (\d+) services × (\d+) workloads = (\d+) endpoints, (\d+) connected proxies`)
	cpSyncLine  = regexp.MustCompile(`initial sync \(.*\): (\S+)$`)
	cpFlipsLine = regexp.MustCompile(`endpoint flips: workload \S+; (\d+) connected proxies call`)
	cpKindLine  = regexp.MustCompile(`(\S+): (\d+) rounds, (\d+) arrivals: p50 (\S+) p99 (\S+) max (\S+); clients pushed per round ([0-9.]+); never arrived (\d+)`)
	cpMemLine   = regexp.MustCompile(`memory \(trellis control process alone\): VmRSS (\d+) MB, peak VmHWM (\d+) MB`)
	cpBenchLine = regexp.MustCompile(`^BenchmarkControlPlaneScale\S*\s+\d+\s+(.*)$`)
)

// parseCPScale reads `go test -bench ControlPlaneScale` output. It fails
// when the benchmark did not get as far as its first measurement.
func parseCPScale(r io.Reader) (*cpScale, error) {
	s := &cpScale{Kinds: map[string]cpKind{}, Metrics: map[string]float64{}, RSSMB: -1, PeakRSSMB: -1, FlipAffected: -1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var err error
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case cpMeshLine.MatchString(line):
			g := cpMeshLine.FindStringSubmatch(line)
			s.Services, s.PerService, s.Endpoints, s.Proxies = atoi(g[1]), atoi(g[2]), atoi(g[3]), atoi(g[4])
		case cpSyncLine.MatchString(line):
			if s.InitialSync, err = time.ParseDuration(cpSyncLine.FindStringSubmatch(line)[1]); err != nil {
				return nil, fmt.Errorf("initial sync: %w", err)
			}
		case cpFlipsLine.MatchString(line):
			s.FlipAffected = atoi(cpFlipsLine.FindStringSubmatch(line)[1])
		case cpKindLine.MatchString(line):
			g := cpKindLine.FindStringSubmatch(line)
			k := cpKind{Rounds: atoi(g[2]), Arrivals: atoi(g[3]), NeverArrived: atoi(g[8])}
			for i, d := range []*time.Duration{&k.P50, &k.P99, &k.Max} {
				if *d, err = time.ParseDuration(g[4+i]); err != nil {
					return nil, fmt.Errorf("%s: %w", g[1], err)
				}
			}
			if k.PushedPerRound, err = strconv.ParseFloat(g[7], 64); err != nil {
				return nil, fmt.Errorf("%s: pushed per round: %w", g[1], err)
			}
			s.Kinds[g[1]] = k
		case cpMemLine.MatchString(line):
			g := cpMemLine.FindStringSubmatch(line)
			s.RSSMB, s.PeakRSSMB = float64(atoi(g[1])), float64(atoi(g[2]))
		case cpBenchLine.MatchString(line):
			// "1234 ns/op   1.2 initial-sync-s   65.0 flip-p99-ms ..."
			f := strings.Fields(cpBenchLine.FindStringSubmatch(line)[1])
			for i := 0; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					s.Metrics[f[i+1]] = v
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	s.fromMetrics()
	if s.Proxies == 0 || s.InitialSync == 0 {
		return nil, fmt.Errorf("no control-plane scale figures in the output (did the benchmark run and finish its initial sync?)")
	}
	return s, nil
}

// fromMetrics fills in, from the benchmark's custom metrics, figures whose
// log lines are missing: `go test` keeps only the first 10 lines of a
// benchmark's log. What only a log line says (p50, max, never arrived)
// stays unknown (-1).
func (s *cpScale) fromMetrics() {
	if v, ok := s.Metrics["initial-sync-s"]; ok && s.InitialSync == 0 {
		s.InitialSync = time.Duration(v * float64(time.Second))
	}
	for _, kind := range []string{"flip", "register", "vs-edit"} {
		p99, ok := s.Metrics[kind+"-p99-ms"]
		if _, logged := s.Kinds[kind]; logged || !ok {
			continue
		}
		k := cpKind{Rounds: -1, Arrivals: -1, P50: -1, P99: time.Duration(p99 * float64(time.Millisecond)), Max: -1, PushedPerRound: -1, NeverArrived: -1}
		if v, ok := s.Metrics[kind+"-pushed/round"]; ok {
			k.PushedPerRound = v
		}
		s.Kinds[kind] = k
	}
	if v, ok := s.Metrics["cp-rss-MB"]; ok && s.RSSMB < 0 {
		s.RSSMB = v
	}
	if v, ok := s.Metrics["cp-peak-rss-MB"]; ok && s.PeakRSSMB < 0 {
		s.PeakRSSMB = v
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// ms formats a duration in milliseconds for the report ("" when unknown).
func ms(d time.Duration) string {
	if d < 0 {
		return ""
	}
	return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10)
}

// num formats a count or rate ("" when unknown: negative).
func num(v float64, prec int) string {
	if v < 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// shell prints the figures as shell assignments for run.sh to eval (CP_*;
// a figure the benchmark did not report is empty).
func (s *cpScale) shell(w io.Writer) {
	kv := [][2]string{
		{"CP_SERVICES", strconv.Itoa(s.Services)}, {"CP_PER_SERVICE", strconv.Itoa(s.PerService)},
		{"CP_ENDPOINTS", strconv.Itoa(s.Endpoints)}, {"CP_PROXIES", strconv.Itoa(s.Proxies)},
		{"CP_SYNC_MS", ms(s.InitialSync)}, {"CP_FLIP_AFFECTED", num(float64(s.FlipAffected), 0)},
	}
	for _, k := range []struct{ kind, prefix string }{{"flip", "CP_FLIP"}, {"register", "CP_REG"}, {"vs-edit", "CP_VS"}} {
		r, ok := s.Kinds[k.kind]
		if !ok {
			r = cpKind{Rounds: -1, Arrivals: -1, P50: -1, P99: -1, Max: -1, PushedPerRound: -1, NeverArrived: -1}
		}
		kv = append(kv,
			[2]string{k.prefix + "_ROUNDS", num(float64(r.Rounds), 0)},
			[2]string{k.prefix + "_P50_MS", ms(r.P50)},
			[2]string{k.prefix + "_P99_MS", ms(r.P99)},
			[2]string{k.prefix + "_MAX_MS", ms(r.Max)},
			[2]string{k.prefix + "_PUSHED", num(r.PushedPerRound, 1)},
			[2]string{k.prefix + "_NEVER", num(float64(r.NeverArrived), 0)})
	}
	kv = append(kv, [2]string{"CP_RSS_MB", num(s.RSSMB, 0)}, [2]string{"CP_PEAK_MB", num(s.PeakRSSMB, 0)})
	for _, p := range kv {
		fmt.Fprintf(w, "%s=%s\n", p[0], p[1])
	}
}

// cpScaleCmd prints the shell assignments of a benchmark output file.
func cpScaleCmd(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("cpscale: %w", err)
	}
	defer f.Close()
	s, err := parseCPScale(f)
	if err != nil {
		return fmt.Errorf("cpscale %s: %w", file, err)
	}
	s.shell(os.Stdout)
	return nil
}
