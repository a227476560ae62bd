"""Devices: registration, tokens and enable/disable, over HTTP (`devices:admin`), `flask sqal …` and the dev seeder."""
