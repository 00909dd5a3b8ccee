"""How the benchmarks compare two figures measured round by round (bench/relay.py, lookups.py)."""

import statistics


def paired_ratio(ours, floor):
    """(median, per-round list) of ours[i] / floor[i]: the two configurations of one round ran
    minutes apart at most, so a slow or fast phase of the VM moves both (a ratio of the two
    medians would pair figures of different rounds)."""
    per_round = [a / b if b > 0 else float("inf") for a, b in zip(ours, floor)]
    return statistics.median(per_round), per_round
