package main

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestPercentileIsNearestRank(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for fraction, want := range map[float64]float64{0.5: 5, 0.9: 9, 0.99: 10, 0: 1} {
		if got := percentile(sorted, fraction); got != want {
			t.Errorf("p%v: want %v, got %v", fraction, want, got)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("no samples must give 0")
	}
}

func TestExchangeRequestIsField1String(t *testing.T) {
	encoded := exchangeRequest("a.b.c")
	number, kind, n := protowire.ConsumeTag(encoded)
	value, m := protowire.ConsumeString(encoded[n:])
	if number != 1 || kind != protowire.BytesType || value != "a.b.c" || n+m != len(encoded) {
		t.Fatalf("got field %d kind %d value %q", number, kind, value)
	}
}

func TestThinKeepsTheEndsAndTheLimit(t *testing.T) {
	sorted := make([]float64, 1000)
	for i := range sorted {
		sorted[i] = float64(i)
	}
	thinned := thin(sorted, 100)
	if len(thinned) != 100 || thinned[0] != 0 || thinned[99] < 980 {
		t.Fatalf("got %d samples from %v to %v", len(thinned), thinned[0], thinned[len(thinned)-1])
	}
}

func TestFormCallerRefusesAFieldWithoutEquals(t *testing.T) {
	if _, _, err := formCaller(options{form: multiFlag{"connector_id"}, concurrency: 1}, nil); err == nil {
		t.Fatal("want an error for -form without =")
	}
}

func TestSummariseCountsReusedTokens(t *testing.T) {
	r := summarise(options{duration: 2e9, samples: 10}, []float64{3, 1, 2}, map[string]int{}, 0.3, 12, 10)
	if r.Requests != 3 || r.Throughput != 1.5 || r.Reused != 2 || r.P50ms != 2 {
		t.Fatalf("got %+v", r)
	}
}
