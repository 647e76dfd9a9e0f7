package webhook

import (
	"fmt"
	"net/http"
	"unsafe"

	"github.com/friendgate/friendgate/internal/policy"
)

// Defaults of the batch bounds. An OpenIM import of 100,000 friends is about 2 MiB of
// JSON; Tencent's blocking friend callbacks carry at most a few hundred items.
const (
	DefaultMaxBatchItems     = 100_000
	DefaultMaxBatchBodyBytes = 16 << 20
)

// maxUserIDBytes bounds one user ID of a callback. Both IM servers limit user IDs to a
// few dozen bytes; a longer one is not a user ID, and it must not reach the velocity
// counters, which keep a copy of the IDs they count.
const maxUserIDBytes = 1024

// itemCost is what one decided item of a batch holds beyond its bytes in the body: its
// engine request and verdict. It is reserved from the in-flight budget with the body, so
// that many small items cannot make a small body expensive.
const itemCost = int64(unsafe.Sizeof(policy.Request{}) + unsafe.Sizeof((*policy.Verdict)(nil)) + unsafe.Sizeof(""))

// tooLarge is why a request is over a bound of its own (its body, its number of items, one
// of its user IDs), as opposed to the server being busy.
type tooLarge struct{ reason string }

func (e *tooLarge) Error() string { return e.reason }

func itemsOver(n, limit int, what string) error {
	if n > limit {
		return &tooLarge{fmt.Sprintf("%d %s in one request, more than the limit of %d", n, what, limit)}
	}
	return nil
}

// checkUserIDs refuses a callback one of whose items names a user ID longer than
// maxUserIDBytes.
func checkUserIDs(items []policy.Request) *refusal {
	for i := range items {
		side, id := "from", items[i].From
		if len(items[i].To) > len(id) {
			side, id = "to", items[i].To
		}
		if len(id) > maxUserIDBytes {
			return &refusal{oversized, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("the %s user ID of item %d is %d bytes long, more than the limit of %d", side, i, len(id), maxUserIDBytes)}
		}
	}
	return nil
}
