"""Calibration of the gate's interval through the gate's own decision (issue 21).

Two arms of equal population accuracy (90%) unless an effect is asked for; per arm a persistent
per-image error tendency (none / mild / strong), a seed-to-seed SD, and a fresh test set of
100 / 359 / 2,000 images drawn from the population for every simulated run; 5 confirmation
seeds per arm; ``policy.decide`` with each interval on the same draws
(``warmstart.promotion.simulate``). Nominal false-promotion rate: 2.5% (one-sided).

    nice -n 10 .venv/bin/python benchmarks/interval_calibration.py --sims 4000 --power-sims 1000
"""

from __future__ import annotations

import argparse
import time

from warmstart.promotion.simulate import (
    NOMINAL,
    PERSISTENCE,
    SUM,
    Scenario,
    promotion_rates,
    recurrence,
)

SEED_SDS = (0.0025, 0.01, 0.025)
SIZES = (100, 359, 2000)
EFFECTS = (0.02, 0.05)
BOOT_SIZE = 100  # the crossed bootstrap costs ~40 ms a run at 100 images, ~0.5 s at 2,000


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def row(name: str, sd: float, n: int, args: argparse.Namespace) -> str:
    sc = Scenario(persistence=PERSISTENCE[name], seed_sd=sd, n_test=n)
    null = promotion_rates(sc, ("seed-t", "two-way"), sims=args.sims)
    boot = "—"
    if n == BOOT_SIZE and args.boot_sims:
        boot = _pct(promotion_rates(sc, ("bootstrap",), sims=args.boot_sims)["bootstrap"])
    power = [
        promotion_rates(
            Scenario(**{**sc.__dict__, "effect": e}), ("seed-t", "two-way"), sims=args.power_sims
        )
        for e in EFFECTS
    ]
    cells = [
        f"{name} ({100 * recurrence(PERSISTENCE[name]):.0f}%)",
        f"{100 * sd:.2f}",
        str(n),
        _pct(null["seed-t"]),
        f"**{_pct(null['two-way'])}**",
        _pct(null[SUM]),
        boot,
    ]
    for p in power:
        cells += [f"{100 * p['seed-t']:.0f}%", f"{100 * p['two-way']:.0f}%", f"{100 * p[SUM]:.0f}%"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=4000, help="runs per cell with equal arms")
    ap.add_argument("--power-sims", type=int, default=1000, help="runs per cell with a gain")
    ap.add_argument("--boot-sims", type=int, default=1000, help="bootstrap runs (100 images)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(
        f"nominal {100 * NOMINAL:.1f}%; {args.sims} runs per false-promotion cell, "
        f"{args.power_sims} per power cell, {args.boot_sims} for the bootstrap; seed 0"
    )
    print(
        "| persistence (error recurs on another seed) | seed SD (points) | test images "
        "| false prom. seed-t (old) | false prom. two-way (new) | false prom. two-way-sum "
        "| false prom. bootstrap | +2: seed-t | +2: two-way | +2: sum | +5: seed-t "
        "| +5: two-way | +5: sum |"
    )
    print("|" + "---|" * 13)
    for name in PERSISTENCE:
        for sd in SEED_SDS:
            for n in SIZES:
                print(row(name, sd, n, args), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
