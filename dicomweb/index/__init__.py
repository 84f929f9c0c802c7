"""The SQL index (SQLite by default, PostgreSQL for scale-out) and its migrations."""
