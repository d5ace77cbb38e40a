"""Reading, cleaning, splitting and augmenting labelled texts; the Lightning DataModule."""
