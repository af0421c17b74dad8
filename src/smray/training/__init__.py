"""Distributed XGBoost training: data channels, engines, checkpoints, metrics and tuning."""
