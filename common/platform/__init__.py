"""The bottom layer: settings, the Firestore client, secrets, logging, errors and HTTP plumbing.

It imports nothing else from `common` but `common.models` and `common.money`.
"""
