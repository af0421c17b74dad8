"""Real-time inference with SageMaker's container contract (`serve`) and the local endpoint router."""
