"""Runs: the run document and its event log (what clients listen to), the lifecycle
transitions, and the Workflows Executions client. Imports `common.budget` and below."""
