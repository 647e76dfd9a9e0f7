package webhook

import (
	"fmt"
	"unsafe"

	"github.com/friendgate/friendgate/internal/policy"
)

// Defaults of the batch bounds. An OpenIM import of 100,000 friends is about 2 MiB of
// JSON; Tencent's blocking friend callbacks carry at most a few hundred items.
const (
	DefaultMaxBatchItems     = 100_000
	DefaultMaxBatchBodyBytes = 16 << 20
)

// maxUserIDBytes bounds one user ID of a batch. Both IM servers limit user IDs to a few
// dozen bytes; a longer one is not a user ID.
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

// checkUserIDs refuses a batch holding a user ID longer than maxUserIDBytes.
func checkUserIDs(ids []string) error {
	for i, id := range ids {
		if len(id) > maxUserIDBytes {
			return &tooLarge{fmt.Sprintf("user ID %d of the batch is %d bytes long, more than the limit of %d", i, len(id), maxUserIDBytes)}
		}
	}
	return nil
}
