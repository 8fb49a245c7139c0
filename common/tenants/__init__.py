"""Tenants: businesses, their tier and limits' overrides, their members and owners. The budget
reads a business's limits from here; the API reads who may do what."""
