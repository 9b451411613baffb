"""What the bot keeps between runs, behind small interfaces: channel settings (SQLite or
PostgreSQL by URL) and the corpora operators upload. Nothing of Discord or onnxruntime."""
