"""Farm connectors: where a farm account's storage lives and how to reach it."""
