"""pytest fixtures for leaderelect.testing (placeholder until the server lands)."""
