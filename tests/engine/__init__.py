"""Tests of the local Workflows engine."""
