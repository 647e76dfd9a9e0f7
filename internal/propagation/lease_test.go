package propagation

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

func TestReportRoundTrip(t *testing.T) {
	renewed := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		counting Counting
		// annotation is the limits-counting annotation written; "" means absent.
		annotation string
		alone      bool
	}{
		{"counting through Redis", CountingShared, "Shared", false},
		{"counting in memory", CountingLocal, "Local", true},
		{"not saying (an older replica)", CountingUnknown, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l coordinationv1.Lease
			Report{ID: "pod-a", Watermark: "42", LimitsCounting: tc.counting, Renewed: renewed, Duration: 30 * time.Second}.Write(&l)
			if got, ok := l.Annotations[LimitsCountingAnnotation]; got != tc.annotation || ok != (tc.annotation != "") {
				t.Errorf("annotation %q (present %v), want %q", got, ok, tc.annotation)
			}
			s, ok := FromLease(&l)
			want := Status{ID: "pod-a", Expires: renewed.Add(30 * time.Second), Watermark: "42", LimitsCounting: tc.counting}
			if !ok || s != want {
				t.Fatalf("FromLease = %+v, %v; want %+v, true", s, ok, want)
			}
			if s.LimitsCounting.Alone() != tc.alone {
				t.Errorf("Alone = %v, want %v", s.LimitsCounting.Alone(), tc.alone)
			}
		})
	}
}

// TestReportOverwrites: a report replaces what the previous one said, so a replica that
// stops saying how it counts (a rollback to an older version) is not read as still Shared.
func TestReportOverwrites(t *testing.T) {
	var l coordinationv1.Lease
	Report{ID: "pod-a", Watermark: "1", LimitsCounting: CountingShared, Duration: time.Second}.Write(&l)
	Report{ID: "pod-a", Watermark: "2", LimitsCounting: CountingLocal, Duration: time.Second}.Write(&l)
	if s, _ := FromLease(&l); s.Watermark != "2" || s.LimitsCounting != CountingLocal {
		t.Errorf("after Shared then Local: %+v", s)
	}
	Report{ID: "pod-a", Watermark: "3", Duration: time.Second}.Write(&l)
	if _, ok := l.Annotations[LimitsCountingAnnotation]; ok {
		t.Errorf("a report that does not say how it counts left the annotation %q", l.Annotations[LimitsCountingAnnotation])
	}
}

func TestFromLeaseReadsUnknownCountingAsUnknown(t *testing.T) {
	var l coordinationv1.Lease
	Report{ID: "pod-a", Duration: time.Second}.Write(&l)
	for _, v := range []string{"Redis", "shared", ""} {
		l.Annotations[LimitsCountingAnnotation] = v
		if s, _ := FromLease(&l); s.LimitsCounting != CountingUnknown || !s.LimitsCounting.Alone() {
			t.Errorf("annotation %q read as %q (alone %v), want unknown, alone", v, s.LimitsCounting, s.LimitsCounting.Alone())
		}
	}
}
