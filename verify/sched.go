package verify

import (
	"fmt"
	"time"
)

// scheduler counts verifications, on the node and per group: running,
// overdue and in flight (running or waiting), and the slowness each group
// owes (see slowBurst). Cache.mu guards it.
type scheduler struct {
	// max and perGroup bound running verifications, flightsPerGroup a
	// group's running and waiting ones (CacheOptions).
	max, perGroup, flightsPerGroup int
	running                        int
	groups                         map[string]*groupState
	slow                           map[string]*debt
	wake                           chan struct{}
}

type groupState struct{ running, overdue, flights int }

// debt is a group's owed wait, as of at.
type debt struct {
	owed time.Duration
	at   time.Time
}

func (s *scheduler) init(o CacheOptions) {
	s.max, s.perGroup, s.flightsPerGroup = o.MaxVerifications, o.MaxPerGroup, o.MaxFlightsPerGroup
	s.groups = map[string]*groupState{}
	s.slow = map[string]*debt{}
	s.wake = make(chan struct{})
}

// wakeLocked wakes every flight waiting for a slot; each checks its own
// groups.
func (s *scheduler) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// fullLocked says which limit keeps a verification in groups from starting
// now, or returns "". It names no group: the answer may reach another
// tenant, whose namespace is none of its business.
func (s *scheduler) fullLocked(groups []string) string {
	if s.running >= s.max {
		return fmt.Sprintf("%d verifications running on the node (the limit)", s.running)
	}
	for _, g := range groups {
		if st := s.groups[g]; st != nil && st.running >= s.perGroup {
			return fmt.Sprintf("%d verifications running for its registry or namespace (the limit)", st.running)
		}
	}
	return ""
}

// crowdedLocked names the first of groups with flightsPerGroup flights
// already.
func (s *scheduler) crowdedLocked(groups []string) string {
	for _, g := range groups {
		if st := s.groups[g]; st != nil && st.flights >= s.flightsPerGroup {
			return g
		}
	}
	return ""
}

func (s *scheduler) takeLocked(groups []string, n int) {
	s.running += n
	s.update(groups, func(st *groupState) { st.running += n })
}

func (s *scheduler) tripLocked(groups []string, n int) {
	s.update(groups, func(st *groupState) { st.overdue += n })
}

func (s *scheduler) flightsLocked(groups []string, n int) {
	s.update(groups, func(st *groupState) { st.flights += n })
}

// trippedLocked says whether one of groups has an overdue flight or owes
// more than slowBurst of waiting.
func (s *scheduler) trippedLocked(groups []string, now time.Time) bool {
	for _, g := range groups {
		if st := s.groups[g]; st != nil && st.overdue > 0 {
			return true
		}
		if d := s.slow[g]; d != nil && d.settle(now) > slowBurst {
			return true
		}
	}
	return false
}

// chargeLocked adds owed (if positive) to each group's debt. Debts paid off
// are dropped, so the map holds only groups that were slow lately; it
// grows by at most one entry per group per charged wait, and charged
// waits hold the runtime's NRI lock one after another.
func (s *scheduler) chargeLocked(groups []string, owed time.Duration, now time.Time) {
	if owed <= 0 {
		return
	}
	for _, g := range groups {
		d := s.slow[g]
		if d == nil {
			d = &debt{at: now}
			s.slow[g] = d
		}
		d.owed = d.settle(now) + owed
	}
	if len(s.slow) > 1024 {
		for g, d := range s.slow {
			if d.settle(now) == 0 {
				delete(s.slow, g)
			}
		}
	}
}

// settle pays back what the time since d.at pays, and returns what is owed.
func (d *debt) settle(now time.Time) time.Duration {
	if el := now.Sub(d.at); el > 0 {
		d.owed = max(0, d.owed-time.Duration(float64(el)*slowRefill))
		d.at = now
	}
	return d.owed
}

// update applies f to each group's state, dropping states back at zero so
// that the map holds only groups with work (an attacker can name groups
// without end: every registry host is one).
func (s *scheduler) update(groups []string, f func(*groupState)) {
	for _, g := range groups {
		st := s.groups[g]
		if st == nil {
			st = &groupState{}
			s.groups[g] = st
		}
		f(st)
		if st.running == 0 && st.overdue == 0 && st.flights == 0 {
			delete(s.groups, g)
		}
	}
}
