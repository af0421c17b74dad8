"""Feature stores: a local one with SageMaker's layout and rules, and SageMaker Feature Store itself."""
