"""Adapters: Postgres (SQLAlchemy), SFTP (asyncssh), local directories, files, Fernet."""
