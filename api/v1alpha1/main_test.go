package v1alpha1_test

import (
	"os"
	"testing"

	"github.com/friendgate/friendgate/internal/testenv"
)

// env is the API server shared by the package's tests (etcd + kube-apiserver with the
// CRDs from config/crd/bases installed).
var env *testenv.Env

// unitTests need no API server: `make unit` runs only these.
var unitTests = []string{"TestListSelection"}

func TestMain(m *testing.M) {
	os.Exit(testenv.RunUnit(m, unitTests, func(e *testenv.Env) { env = e }))
}
