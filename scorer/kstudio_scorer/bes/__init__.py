"""Batch scoring (Azure's BES): job records and who runs them, file scoring, classic's BES format."""
