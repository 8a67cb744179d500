"""The version of interpolate_video (the package, the command and the reports), on its own so
that reading it imports nothing else."""
VERSION = "0.2.0"
