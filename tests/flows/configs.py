"""Pipeline configurations shared by the flow tests (small enough for 2 CPU cores)."""

# Split-class UCI digits (0-4 → 5-9), 8×8: about a minute end to end.
TINY = dict(
    source="builtin:uci-digits?classes=0-4",
    target="builtin:uci-digits?classes=5-9",
    k_shot=5,
    strategies=["supervised"],
    transfer_modes=["linear_probe"],
    seeds=2,
    pretrain_epochs=3,
    finetune_epochs=4,
    confirm_seeds=0,  # no confirmation training: the gate says "unconfirmed" (never promotes)
)

# MNIST digits → UCI digits at k=1: supervised transfer beats scratch by tens of points (at k=5
# the gain on fresh confirmation seeds is about +3 points, too small for 5 seeds to confirm).
PROMOTING = dict(
    source="builtin:mnist-5k?crop=content",
    target="builtin:uci-digits",
    k_shot=1,
    strategies=["supervised"],
    transfer_modes=["linear_probe"],
    seeds=2,
    pretrain_epochs=3,
    finetune_epochs=6,
    confirm_seeds=5,  # the gate decides on seeds 1000-1004 only (two-way interval over seeds and test images)
)
