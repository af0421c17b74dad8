"""One module per mode of the image (`smray-entrypoint MODE`): each has `parser()` and `run(config, opts)`,
and smray.entrypoints.dispatch lists exactly these."""
