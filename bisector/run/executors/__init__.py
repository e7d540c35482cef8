"""Where steps run: local worker threads or a Dask cluster."""
