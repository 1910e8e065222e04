"""Storage: the databases (SQLAlchemy, the hot path's statements on the driver), tables and
migrations."""
