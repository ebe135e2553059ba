"""Data plane: the .ilearner artifact format, object storage, the scoring app and batch scoring."""
