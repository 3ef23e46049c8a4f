"""What every Lanyard HTTP API is built from, below every app: the body reader and the OpenAPI vocabulary."""
