"""RaptorFlow's shared code: everything the Cloud Functions and the CLI run."""
