"""The train mode's engines: distributed XGBoost on the job's Ray cluster, tuning, checkpoints, the
training channels and the per-round metric log."""
