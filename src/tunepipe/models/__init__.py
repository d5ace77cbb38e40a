"""The classifier (pretrained encoder + linear head), its LightningModule, schedules and the baseline."""
