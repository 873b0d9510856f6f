"""Where a team's table is read from: SQLAlchemy URLs, CSV and Parquet files, one null rule."""
