"""What every other package shares: the user-error type, path/hub and device rules, the offline environment."""
