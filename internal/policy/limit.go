package policy

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/friendgate/friendgate/api/v1alpha1"
	"github.com/friendgate/friendgate/internal/velocity"
)

// DefaultLimitMessage is the deny message of a limit that sets none.
const DefaultLimitMessage = "too many requests, try again later"

// Limit is one compiled limit of a policy: what a counter needs to count it, whom it
// counts requests for, and the verdict that refuses a request over it. Limits are built
// once per compilation and shared, so a decision allocates nothing for them; treat them
// as read-only.
type Limit struct {
	// Velocity is the limit as a counter sees it; its ID is namespace/name/<limit name>.
	Velocity *velocity.Limit
	// Key says whom requests are counted for.
	Key v1alpha1.LimitKey
	// DryRun is true when the policy's enforcementAction is DryRun: the limit counts and
	// reports "would deny" but never refuses.
	DryRun bool
	// Verdict refuses a request over the limit: Kind limit, Detail
	// namespace/name/limit/<name>, the limit's code and message, DryRun as above.
	Verdict *Verdict

	// events is the bit set of the events the limit counts.
	events uint8
}

// Subject is whom r counts for under l, within r's app. ok is false when the subject is
// empty (a ClientIP limit on an OpenIM request, which carries no client address; a FromTo
// limit needs both users): such a request does not count against l, and Decide leaves l
// out of Decision.Limits.
func (l *Limit) Subject(r *Request) (s velocity.Subject, ok bool) {
	s.AppID = r.AppID
	switch l.Key {
	case v1alpha1.LimitKeyFrom:
		s.A = r.From
	case v1alpha1.LimitKeyTo:
		s.A = r.To
	case v1alpha1.LimitKeyClientIP:
		s.A = r.ClientIP
	case v1alpha1.LimitKeyFromTo:
		s.A, s.B = r.From, r.To
		return s, s.A != "" && s.B != ""
	}
	return s, s.A != ""
}

func newLimit(c *Compiled, l *v1alpha1.Limit) *Limit {
	vl := &velocity.Limit{ID: c.Key + "/" + l.Name, Rate: int64(l.Limit), Window: l.Window.Duration}
	if l.Penalty != nil {
		vl.Penalty = l.Penalty.Duration
	}
	return &Limit{
		Velocity: vl,
		Key:      l.Key,
		DryRun:   c.DryRun,
		Verdict:  newVerdict(c, KindLimit, l.Name, l.Code, l.Message, DefaultLimitMessage),
		events:   eventMask(l.Events, v1alpha1.DefaultLimitEvents),
	}
}

// limitList is the limits a request may count against, in decision order: policies by
// priority then namespace/name, a policy's limits as written. policies[i] is the snapshot
// ordinal of limits[i]'s policy, for its exemptions.
type limitList struct {
	limits   []*Limit
	policies []uint32
}

// limitLists are a request's candidate limits by event index. withoutIP are the same
// lists without ClientIP limits, for requests without a client address (every OpenIM
// request): a Decision can then hand out a slice of the list as it is, instead of
// building one without them.
type limitLists struct {
	all, withoutIP [len(v1alpha1.Events)]limitList
}

// newLimitLists lays out the limits of the policies with the given ordinals, ascending.
func newLimitLists(policies []*Compiled, ordinals []uint32) *limitLists {
	ll := &limitLists{}
	for ei := range v1alpha1.Events {
		for _, p := range ordinals {
			c := policies[p]
			if c.events&(1<<ei) == 0 {
				continue
			}
			for _, l := range c.Limits {
				if l.events&(1<<ei) == 0 {
					continue
				}
				ll.all[ei].add(l, p)
				if l.Key != v1alpha1.LimitKeyClientIP {
					ll.withoutIP[ei].add(l, p)
				}
			}
		}
	}
	return ll
}

func (ll *limitList) add(l *Limit, policy uint32) {
	ll.limits = append(ll.limits, l)
	ll.policies = append(ll.policies, policy)
}

// indexLimits files the limits of the snapshot's policies: one set of lists for the
// policies without appIDs, and one per appID that a policy with limits names (in byApp,
// which NewSnapshot has filled), holding the limits of every policy that applies to that
// appID. AppIDs whose policies have the same limits share their lists.
func (s *Snapshot) indexLimits() {
	var wildcard []uint32
	byApp := map[string][]uint32{}
	for p, c := range s.policies {
		if len(c.Limits) == 0 {
			continue
		}
		if len(c.appIDs) == 0 {
			wildcard = append(wildcard, uint32(p))
			continue
		}
		for _, app := range sortedUnique(c.appIDs) {
			byApp[app] = append(byApp[app], uint32(p))
		}
	}
	if len(wildcard) > 0 {
		s.wildcardLimits = newLimitLists(s.policies, wildcard)
	}
	if len(byApp) == 0 {
		return
	}
	shared := map[string]*limitLists{}
	for app, ordinals := range byApp {
		ordinals = append(ordinals, wildcard...)
		slices.Sort(ordinals)
		var key strings.Builder
		for _, p := range ordinals {
			key.WriteString(strconv.FormatUint(uint64(p), 36))
			key.WriteByte(',')
		}
		ll, ok := shared[key.String()]
		if !ok {
			ll = newLimitLists(s.policies, ordinals)
			shared[key.String()] = ll
		}
		a := s.byApp[app]
		a.limits = ll
		s.byApp[app] = a
	}
}

// limits returns the limits of Decision.Limits for r: the candidates of r's appID (app,
// or the wildcard's when nil; one of them is not) and event whose policy does not exempt
// r and whose subject is not empty. It returns a slice of the snapshot's lists (capacity
// clipped, so appending copies) whenever the limits that apply are consecutive in the
// list, which they are unless an exemption or an empty user ID drops limits from the
// middle of it; only then does it allocate.
func (s *Snapshot) limits(sc *scratch, r *Request, ei int, app *limitLists) []*Limit {
	ll := app
	if ll == nil {
		ll = s.wildcardLimits
	}
	list := &ll.all[ei]
	if r.ClientIP == "" {
		list = &ll.withoutIP[ei]
	}
	var out []*Limit
	start, end := 0, 0
	for i, l := range list.limits {
		if h := &sc.hits[list.policies[i]]; h.epoch == sc.epoch && h.exempt {
			continue
		}
		if _, ok := l.Subject(r); !ok {
			continue
		}
		switch {
		case out != nil:
			out = append(out, l)
		case start == end:
			start, end = i, i+1
		case end == i:
			end++
		default:
			out = make([]*Limit, 0, end-start+len(list.limits)-i)
			out = append(append(out, list.limits[start:end]...), l)
		}
	}
	switch {
	case out != nil:
		return out
	case start == end:
		return nil
	}
	return list.limits[start:end:end]
}

// CountLimits counts r against d.Limits with c at now, in order (docs/policy.md,
// "Limits"). A limit r is over (Over or Penalized) refuses r with its verdict, and the
// limits after it are not counted; a DryRun policy's limit that is over reports its
// verdict in WouldDeny instead, and counting goes on. seen, when set, is told each
// limit's outcome. d must be the decision Decide gave for r: it lists no limit when r is
// already refused.
func (d *Decision) CountLimits(r *Request, c velocity.Counter, now time.Time, seen func(*Limit, velocity.Outcome)) {
	for i, l := range d.Limits {
		s, ok := l.Subject(r)
		if !ok {
			continue
		}
		o := c.Take(l.Velocity, s, now)
		if seen != nil {
			seen(l, o)
		}
		switch {
		case o == velocity.Counted:
		case l.DryRun:
			// Room for every limit left: one allocation however many of them are over.
			d.WouldDeny = append(slices.Grow(d.WouldDeny, len(d.Limits)-i), l.Verdict)
		default:
			d.Deny = l.Verdict
			return
		}
	}
}
