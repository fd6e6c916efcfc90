"""Default, user-editable configuration files (TOML)."""
