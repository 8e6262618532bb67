"""drivers/native."""
