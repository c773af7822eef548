"""False-promotion rate of the old and the new gate procedure, in simulation (issue 14).

Identical arms (no real gain) unless ``--effect`` is given: 6 transfer arms + scratch, 3
selection seeds, 360 test and 270 validation images, true accuracy 90%; a seed draws each
model's accuracy with the given seed-to-seed SD (lucky on validation and test alike). ``old``
gates the best-on-validation arm's own seeds on test with the paired bootstrap; ``new`` retrains
it and scratch on 5 fresh seeds and uses the seed-level t interval. Nominal rate: 2.5%.

    .venv/bin/python benchmarks/false_promotion.py --sims 2000
"""

from __future__ import annotations

import argparse
import time

from warmstart.promotion.simulate import NOMINAL, Scenario, promotion_rate

SDS = (0.0, 0.009, 0.018, 0.027, 0.043, 0.062)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument(
        "--power-effect", type=float, default=0.05, help="true gain for the power column"
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    eff = args.power_effect
    print(f"nominal {100 * NOMINAL:.1f}%, {args.sims} simulated runs per cell, seed 0")
    print(
        f"| seed-to-seed SD (points) | old: best of 6, same seeds, bootstrap | "
        f"new: 5 fresh seeds, seed-t | new: power at +{100 * eff:.0f} points |"
    )
    print("|---|---|---|---|")
    for sd in SDS:
        old = promotion_rate("old", Scenario(seed_sd=sd), sims=args.sims)
        new = promotion_rate("new", Scenario(seed_sd=sd), sims=args.sims)
        power = promotion_rate("new", Scenario(seed_sd=sd, effect=eff), sims=args.sims)
        print(f"| {100 * sd:.1f} | {100 * old:.1f}% | {100 * new:.1f}% | {100 * power:.0f}% |")
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
