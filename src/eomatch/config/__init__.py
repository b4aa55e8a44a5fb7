"""Configuration models (YAML files) and environment settings."""
