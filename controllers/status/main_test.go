package status_test

import (
	"os"
	"testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// env is the API server shared by the package's tests. Each test runs its own manager
// restricted to its own namespace, so tests run in parallel without seeing each other's
// policies or replica Leases.
var env *testenv.Env

// unitTests need no API server: `make unit` runs only these.
var unitTests = []string{"TestReachOf", "TestDescribePropagation", "TestClassify", "TestDesiredStatus", "TestCountingOf", "TestDescribeLimitsCounting", "TestTrackerAnnouncements", "TestTrackerAnnouncesLimitsCounting", "TestTrackerLive", "TestAffectedBy"}

func TestMain(m *testing.M) {
	os.Exit(testenv.RunUnit(m, unitTests, func(e *testenv.Env) { env = e }))
}
