"""Reads: the REST API over stored samples and devices, and the dashboard figures."""
