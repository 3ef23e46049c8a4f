"""AI activity: the gateways' ingest API, the usage roll-up, and the reports and dashboard."""
