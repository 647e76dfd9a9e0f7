package webhook

import (
	"bytes"
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

// elementCount decodes a JSON array as the number of its elements, allocating nothing.
type elementCount int

func (n *elementCount) UnmarshalJSON(data []byte) error {
	*n = elementCount(countElements(data))
	return nil
}

// upToItems reports whether body certainly holds at most limit items: every item holds at
// least perItem bytes equal to mark (a '{' per Tencent item, two '"' per user ID), so
// counting them, which is fast and allocates nothing, bounds the items from above. Only a
// body that could be over the limit is then counted exactly (see elementCount), so many
// tiny items cannot make the server allocate far more than it received.
func upToItems(body []byte, mark []byte, perItem, limit int) bool {
	return bytes.Count(body, mark)/perItem <= limit
}

func itemsOver(n, limit int, what string) error {
	if n > limit {
		return &tooLarge{fmt.Sprintf("%d %s in one request, more than the limit of %d", n, what, limit)}
	}
	return nil
}

var (
	openBrace = []byte("{")
	quote     = []byte(`"`)
)

// countElements counts the elements of a JSON array, given as valid JSON (encoding/json
// validates a whole body before it hands a part to an Unmarshaler). null counts 0.
func countElements(data []byte) int {
	depth, n := 0, 0
	inString, escaped, element := false, false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '[', '{':
			depth++
			if depth == 2 {
				element = true
			}
			continue
		case ']', '}':
			depth--
			continue
		case ',':
			if depth == 1 {
				n++
			}
			continue
		case '"':
			inString = true
		}
		if depth == 1 {
			element = true
		}
	}
	if element {
		n++
	}
	return n
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
