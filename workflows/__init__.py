"""Workflow definitions (*.workflows.yaml) and the local Google Cloud Workflows engine."""
