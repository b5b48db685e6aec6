"""Plain English passages the synthetic benchmarks speak with espeak-ng: no digits, no names,
so a recognizer's spelling choices never count as errors."""

RIVER_VALLEY = (
    "The history of the river valley begins long before the first farms appeared on its banks. "
    "Every spring the water rose over the low fields and left behind a layer of dark soil. "
    "People learned to plant their crops after the flood had passed and the ground was dry again. "
    "Over many years small villages grew into towns, and the towns were joined by roads and bridges. "
    "Traders carried grain, cloth and salt from one market to the next along the river. "
    "When the railway arrived, the old boats slowly disappeared from the water. "
    "Today the valley is quiet, and visitors walk along the paths where the traders once worked."
)
