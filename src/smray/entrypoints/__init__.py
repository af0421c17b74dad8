"""The image's side: what runs inside the container. `smray-entrypoint MODE` (dispatch) forms the job's
Ray cluster (smray.ray_bootstrap), runs one module of `modes/` and reports failure the way SageMaker
reads it (failure). It imports the shared modules and smray.contracts, never smray.workstation."""
