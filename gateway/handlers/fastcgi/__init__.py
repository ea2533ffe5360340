"""FastCGI server: record format, connection handling and process supervision."""
