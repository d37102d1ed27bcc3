"""Tests of the run journal: records, write-ahead, crash detection, snapshots, recovery."""
