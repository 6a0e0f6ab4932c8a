#!/usr/bin/env python3
# A model of FULL_REFRESH_DAYS's cost under scheduling rules (docs/performance-requests.md,
# "What is left"): full refreshes a day, per rule, for accounts that post with the sparse world's chances.
#
#   python3 bench/requests/refresh_rules.py [--accounts N] [--days D] [--seed S]
#
# Each account posts on a day with its own chance, log-uniform in [0.02, 0.9] as in the fake
# AppView's sparse world; a day it posts, it takes its feed anyway (a full window, which resets its
# clock). On a quiet day a rule decides whether it pays a full refresh. Every rule keeps the
# issue's guarantee: no account goes more than N days without a full window feed. Day 1 is every
# account's backfill, as in `make bench-requests`.
import argparse
import math
import random

N = 7


def current(day, phase, last_feed, own):
    """The rule before the clock: the account's hash day, every N days, whatever it fetched since."""
    return day % N == phase


def deadline(day, phase, last_feed, own):
    """Only when the last full feed is N days old: the fewest refreshes, but no spread."""
    return day - last_feed >= N


def clock(day, phase, last_feed, own):
    """The shipped rule (docs/request-economy.md, "The full refresh"): N days after the account's
    last feed of its own (a posting day or a refresh), the hash day until it has one: a common
    feed day such as the backfill starts no clock, so it bunches nothing."""
    return day - last_feed >= N if own else day % N == phase


def slots(offsets):
    """Hash-placed slots within each N days; refresh at a slot only if the next slot is too late."""
    def rule(day, phase, last_feed, own):
        if (day - phase) % N not in offsets:
            return False
        nxt = day + 1
        while (nxt - phase) % N not in offsets:
            nxt += 1
        return nxt - last_feed > N
    return rule


RULES = [("hash day (before)", current), ("two slots {0,4}", slots({0, 4})),
         ("three slots {0,2,4}", slots({0, 2, 4})), ("deadline only", deadline),
         ("clock, hash day until own", clock)]


def simulate(rule, accounts, days, seed):
    rng = random.Random(seed)
    per_day = [0] * (days + 1)
    for _ in range(accounts):
        chance = math.exp(rng.uniform(math.log(0.02), math.log(0.9)))
        phase = rng.randrange(N)
        last_feed, own = 1, False  # the backfill: a feed, but no feed of the account's own
        for day in range(2, days + 1):
            if rng.random() < chance:
                last_feed, own = day, True
            elif rule(day, phase, last_feed, own):
                per_day[day] += 1
                last_feed, own = day, True
            assert day - last_feed < N + 1
    return per_day[2:]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=22)
    ap.add_argument("--seed", type=int, default=2)
    a = ap.parse_args()
    print(f"full refreshes a day, days 2..{a.days}, {a.accounts} accounts (same accounts and posting days for every rule)")
    for name, rule in RULES:
        counts = simulate(rule, a.accounts, a.days, a.seed)
        later = counts[N:]  # after the first N days: the steady state
        print(f"{name:24} days 2-8 max {max(counts[:N]):4d}   later mean {sum(later) / len(later):6.1f} "
              f"max {max(later):4d}   {' '.join(str(c) for c in counts)}")


if __name__ == "__main__":
    main()
