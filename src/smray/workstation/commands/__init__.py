"""The `smray` command line's subcommands, one module per group."""
