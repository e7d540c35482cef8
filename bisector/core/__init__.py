"""The search core: the typed model, the candidate DAG, the search and the loop (standard library and numpy only)."""
